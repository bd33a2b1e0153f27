//! The room core (issue 10, under way): its data (rooms and their name
//! index, histories, the matchmaking machine), a room's rules as pure
//! functions ([`rules`]), the typed messages a worker exchanges with its
//! peers ([`bus_msg`]) and the messages it sends its clients ([`out`]).
//! Nothing here touches a socket, a poll loop or a connection; the request
//! handlers that drive it still live in `impl Worker` blocks outside.

pub mod bus_msg;
pub mod history;
pub mod matcher;
pub mod names;
pub mod out;
pub mod room;
pub mod rules;
