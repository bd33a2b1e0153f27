//! The room core (issue 10, under way): the typed messages a worker
//! exchanges with its peers ([`bus_msg`]), the messages it sends its clients
//! ([`out`]), and a room's rules as pure functions ([`rules`]). Nothing here
//! touches a socket, a poll loop or a connection.

pub mod bus_msg;
pub mod out;
pub mod rules;
