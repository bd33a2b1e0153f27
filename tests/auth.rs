//! Auth (PROTOCOL.md "Auth"): with `--jwt-key`, only upgrades carrying a
//! valid HS256 token get in; its `sub` becomes the default `meta` and its
//! `rooms` claim limits which rooms the client may create or join.

#[macro_use]
mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

const KEY: &str = "test-key-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn token(claims: &str) -> String {
    roomd::auth::sign(KEY.as_bytes(), claims)
}

fn server() -> Server {
    Server::start(&["--jwt-key", KEY])
}

/// Sends an upgrade of `path` by hand; the status code of the reply.
fn upgrade_status(server: &Server, path: &str, extra_headers: &str) -> u16 {
    server.upgrade_with(path, extra_headers).response.status
}

#[test]
fn valid_token_in_query_gets_in_and_sub_becomes_meta() {
    let server = server();
    let t = token(&format!(r#"{{"sub":"alice","exp":{}}}"#, now() + 60));
    let mut a = server.client_with(&format!("/ws?token={t}"), None);
    let joined = a.create("lobby");
    let me = joined["members"]
        .arr()
        .iter()
        .find(|m| m["id"].u() == a.id)
        .expect("self in members")
        .clone();
    assert_eq!(me["meta"].b(), b"alice");
}

#[test]
fn bearer_header_is_accepted() {
    let server = server();
    let t = token(&format!(r#"{{"exp":{}}}"#, now() + 60));
    assert_eq!(
        upgrade_status(&server, "/ws", &format!("Authorization: Bearer {t}\r\n")),
        101
    );
}

#[test]
fn missing_expired_and_forged_tokens_get_401() {
    let server = server();
    assert_eq!(upgrade_status(&server, "/ws", ""), 401);
    let expired = token(&format!(r#"{{"exp":{}}}"#, now() - 10));
    assert_eq!(
        upgrade_status(&server, &format!("/ws?token={expired}"), ""),
        401
    );
    let forged = roomd::auth::sign(b"another key", &format!(r#"{{"exp":{}}}"#, now() + 60));
    assert_eq!(
        upgrade_status(&server, &format!("/ws?token={forged}"), ""),
        401
    );
    let not_yet = token(&format!(
        r#"{{"exp":{},"nbf":{}}}"#,
        now() + 120,
        now() + 60
    ));
    assert_eq!(
        upgrade_status(&server, &format!("/ws?token={not_yet}"), ""),
        401
    );
    assert_eq!(
        upgrade_status(&server, "/ws?token=garbage.garbage.garbage", ""),
        401
    );
    // Health checks need no token.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn rooms_claim_limits_create_and_join() {
    let server = server();
    let open = token(&format!(r#"{{"exp":{}}}"#, now() + 60));
    let mut owner = server.client_with(&format!("/ws?token={open}"), None);
    owner.create("secret");
    owner.create("game-1");

    let limited = token(&format!(
        r#"{{"exp":{},"rooms":["lobby","game-*"]}}"#,
        now() + 60
    ));
    let mut c = server.client_with(&format!("/ws?token={limited}"), None);
    c.send(msg! {"t" => "join", "rid" => 1u32, "room" => "secret"});
    c.expect_err_rid("unauthorized", 1);
    c.send(msg! {"t" => "create", "rid" => 2u32, "room" => "other"});
    c.expect_err_rid("unauthorized", 2);
    c.join("game-1");
    c.create("lobby");
}

#[test]
fn without_a_key_no_token_is_needed() {
    let server = Server::start(&[]);
    assert_eq!(upgrade_status(&server, "/ws", ""), 101);
}
