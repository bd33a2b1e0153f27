//! The room core's boundaries (issue 10): the typed messages a worker
//! exchanges with its peers ([`bus_msg`]) and the messages it sends its
//! clients ([`out`]). Nothing here touches a socket, a poll loop or a
//! connection.

pub mod bus_msg;
pub mod out;
