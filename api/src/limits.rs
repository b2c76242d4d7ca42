//! Rate limits (R17): per client IP on anonymous writes (sign-in, comments, tickets,
//! clicks, consent), per token on commands (every write that carries a bearer token). Over a
//! limit: 429 problem+json with `Retry-After`, answered before the handler runs, so nothing
//! of the request is recorded (a limited click is not counted).
//!
//! The limiters are `governor`'s keyed GCRA limiters, in this process's memory: they hold
//! across the server's threads; several processes each keep their own (see ARCHITECTURE.md).

use crate::client_ip::client_ip;
use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

/// The anonymous writes, by route template and method.
const ANONYMOUS_WRITES: [(&str, Method); 5] = [
    ("/v1/auth/instagram", Method::POST),
    ("/v1/articles/{slug}/comments", Method::POST),
    ("/v1/support/tickets", Method::POST),
    ("/w/{id}/click", Method::POST),
    ("/v1/consent/{visitor_id}", Method::PUT),
];

/// The server's limiters.
pub struct Limits {
    anonymous: DefaultKeyedRateLimiter<IpAddr>,
    /// Keyed by the SHA-256 of the token: no token is kept here.
    commands: DefaultKeyedRateLimiter<[u8; 32]>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

impl Limits {
    /// Limits of `anonymous` writes per client IP and `commands` per token, per minute.
    pub fn per_minute(anonymous: NonZeroU32, commands: NonZeroU32) -> Self {
        Limits {
            anonymous: RateLimiter::keyed(Quota::per_minute(anonymous)),
            commands: RateLimiter::keyed(Quota::per_minute(commands)),
            clock: DefaultClock::default(),
        }
    }

    /// Forgets the keys whose limit has fully recovered (run now and then: the maps
    /// would otherwise keep every IP and token ever seen).
    pub fn forget_idle(&self) {
        self.anonymous.retain_recent();
        self.commands.retain_recent();
    }

    /// `Some(seconds to wait)` when `ip` is over its limit of anonymous writes.
    fn anonymous(&self, ip: IpAddr) -> Option<u64> {
        self.anonymous
            .check_key(&ip)
            .err()
            .map(|n| n.wait_time_from(self.clock.now()).as_secs() + 1)
    }

    /// `Some(seconds to wait)` when the token is over its limit of commands.
    fn command(&self, token: &str) -> Option<u64> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.commands
            .check_key(&key)
            .err()
            .map(|n| n.wait_time_from(self.clock.now()).as_secs() + 1)
    }
}

/// The middleware: a write with a bearer token counts against the token, an anonymous write
/// against the client's IP; reads are not limited.
pub async fn limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let wait = match token {
        Some(token) => app.limits.command(token),
        None => {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            let anonymous = ANONYMOUS_WRITES
                .iter()
                .any(|(r, m)| Some(*r) == route && *m == method);
            if anonymous {
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
                    .unwrap_or(IpAddr::from([0, 0, 0, 0]));
                let forwarded: Vec<&str> = request
                    .headers()
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                app.limits
                    .anonymous(client_ip(peer, &forwarded, &app.trusted_proxies))
            } else {
                None
            }
        }
    };
    match wait {
        None => next.run(request).await,
        Some(seconds) => {
            metrics::counter!("lw_rate_limited_total", "kind" => if token.is_some() { "token" } else { "anonymous" })
                .increment(1);
            Problem::too_many_requests(seconds).into_response()
        }
    }
}
