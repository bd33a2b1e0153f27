//! The room core (issue 10, under way): its data (rooms and their name
//! index, sessions and their seats, histories, the matchmaking machine), a room's rules as pure
//! functions ([`rules`]), the typed messages a worker exchanges with its
//! peers ([`bus_msg`]) and the messages it sends its clients ([`out`]).
//! Nothing here touches a socket, a poll loop or a connection; the request
//! handlers that drive it still live in `impl Worker` blocks outside.

/// A client connection as the core names it: the loop's connection slab is
/// keyed by it (`Arena<Conn, Link>`), so sessions hold typed, generational
/// ids of connections without knowing what a connection is.
pub enum Link {}

/// A client connection's id (see [`Link`]).
pub type ConnId = crate::arena::Id<Link>;

pub mod bus_msg;
pub mod history;
pub mod matcher;
pub mod names;
pub mod out;
pub mod room;
pub mod rules;
pub mod session;
