//! A PostgreSQL test never passes silently: when the server named by LW_TEST_DATABASE_URL
//! cannot be reached, the helper fails the test with a message naming that variable. This is
//! its own test binary because it changes the process environment.

use lightwidget_testkit::{TestDatabase, TEST_DATABASE_URL_VAR};

#[tokio::test]
async fn an_unreachable_server_fails_naming_the_variable() {
    // Port 1 on loopback: nothing listens there.
    std::env::set_var(
        TEST_DATABASE_URL_VAR,
        "postgres://postgres@127.0.0.1:1/postgres",
    );
    let outcome = tokio::spawn(async { TestDatabase::create().await }).await;
    let panic = outcome.expect_err("creating a test database must fail");
    let payload = panic.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains(TEST_DATABASE_URL_VAR), "{message}");
}
