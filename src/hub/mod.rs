//! The room core's boundaries (issue 10): the typed messages a worker
//! exchanges with its peers ([`bus_msg`]). Nothing here touches a socket,
//! a poll loop or a connection.

pub mod bus_msg;
