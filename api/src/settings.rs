//! Settings from the environment (API.md, "Settings"). A bad value refuses to start and says
//! which variable is wrong (never echoing a secret).

use std::net::SocketAddr;
use std::path::PathBuf;

/// `LW_CLOCK`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockSetting {
    #[default]
    System,
    /// Time moves only on `POST /v1/admin/clock`.
    Manual,
}

/// `LW_INSTAGRAM_URL`, `LW_INSTAGRAM_APP_ID`, `LW_INSTAGRAM_APP_SECRET` and
/// `LW_INSTAGRAM_REDIRECT_URI`.
#[derive(Clone)]
pub struct InstagramSettings {
    pub url: String,
    pub app_id: String,
    pub app_secret: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for InstagramSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstagramSettings")
            .field("url", &self.url)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

/// The processors' settings (API.md, Processors): each is configured when its URL is set,
/// and then needs the rest of its group.
#[derive(Clone, Default)]
pub struct ProcessorSettings {
    pub sendgrid: Option<SendGridSettings>,
    pub zendesk: Option<ZendeskSettings>,
    pub cloudflare: Option<CloudflareSettings>,
    pub analytics: Option<AnalyticsSettings>,
    /// `LW_OUTBOX_GIVE_UP_SECONDS`: a message not delivered this long after it was queued
    /// is dead (default 24 h).
    pub give_up_after: Option<std::time::Duration>,
    /// `LW_OUTBOX_RETRY_BASE_MS`: the first retry's window (default 1 s); each later one
    /// doubles, to at most 10 minutes.
    pub retry_base: Option<std::time::Duration>,
    /// `LW_OUTBOX_LEASE_SECONDS`: how long an attempt is its dispatcher's alone (default
    /// 60 s). Keep it above the 10 s send timeout: a shorter lease lets another server send
    /// a message whose first send is still under way.
    pub lease: Option<std::time::Duration>,
}

/// `LW_SENDGRID_URL`, `LW_SENDGRID_API_KEY`, `LW_MAIL_FROM`, `LW_EDITOR_EMAIL`.
#[derive(Clone)]
pub struct SendGridSettings {
    pub url: String,
    pub api_key: String,
    pub from: String,
    pub editor: String,
}

/// `LW_ZENDESK_URL`, `LW_ZENDESK_EMAIL`, `LW_ZENDESK_TOKEN`.
#[derive(Clone)]
pub struct ZendeskSettings {
    pub url: String,
    pub email: String,
    pub token: String,
}

/// An http(s) URL from the environment, without a trailing slash; anything else refuses the
/// start, naming the setting.
fn url_setting(name: &str) -> anyhow::Result<Option<String>> {
    match var(name) {
        None => Ok(None),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Ok(Some(u.trim_end_matches('/').to_owned()))
        }
        Some(_) => anyhow::bail!("{name} must be an http(s) URL"),
    }
}

/// `LW_CLOUDFLARE_URL`, `LW_CLOUDFLARE_ZONE`, `LW_CLOUDFLARE_TOKEN`, `LW_PUBLIC_URL`.
#[derive(Clone)]
pub struct CloudflareSettings {
    pub url: String,
    pub zone: String,
    pub token: String,
    pub public_url: String,
}

/// `LW_GA_URL`, `LW_GA_MEASUREMENT_ID`, `LW_GA_API_SECRET`; `LW_PUBLIC_URL` names the pages.
#[derive(Clone)]
pub struct AnalyticsSettings {
    pub url: String,
    pub measurement_id: String,
    pub api_secret: String,
    pub public_url: String,
}

impl ProcessorSettings {
    fn from_env() -> anyhow::Result<Self> {
        let url_of = url_setting;
        fn needed(name: &str, with: &str) -> anyhow::Result<String> {
            var(name).ok_or_else(|| anyhow::anyhow!("{name} is required with {with}"))
        }
        let sendgrid = url_of("LW_SENDGRID_URL")?
            .map(|url| -> anyhow::Result<_> {
                Ok(SendGridSettings {
                    url,
                    api_key: needed("LW_SENDGRID_API_KEY", "LW_SENDGRID_URL")?,
                    from: needed("LW_MAIL_FROM", "LW_SENDGRID_URL")?,
                    editor: needed("LW_EDITOR_EMAIL", "LW_SENDGRID_URL")?,
                })
            })
            .transpose()?;
        let zendesk = url_of("LW_ZENDESK_URL")?
            .map(|url| -> anyhow::Result<_> {
                Ok(ZendeskSettings {
                    url,
                    email: needed("LW_ZENDESK_EMAIL", "LW_ZENDESK_URL")?,
                    token: needed("LW_ZENDESK_TOKEN", "LW_ZENDESK_URL")?,
                })
            })
            .transpose()?;
        let cloudflare = url_of("LW_CLOUDFLARE_URL")?
            .map(|url| -> anyhow::Result<_> {
                Ok(CloudflareSettings {
                    url,
                    zone: needed("LW_CLOUDFLARE_ZONE", "LW_CLOUDFLARE_URL")?,
                    token: needed("LW_CLOUDFLARE_TOKEN", "LW_CLOUDFLARE_URL")?,
                    public_url: url_of("LW_PUBLIC_URL")?.ok_or_else(|| {
                        anyhow::anyhow!("LW_PUBLIC_URL is required with LW_CLOUDFLARE_URL")
                    })?,
                })
            })
            .transpose()?;
        let analytics = url_of("LW_GA_URL")?
            .map(|url| -> anyhow::Result<_> {
                Ok(AnalyticsSettings {
                    url,
                    measurement_id: needed("LW_GA_MEASUREMENT_ID", "LW_GA_URL")?,
                    api_secret: needed("LW_GA_API_SECRET", "LW_GA_URL")?,
                    public_url: url_of("LW_PUBLIC_URL")?.ok_or_else(|| {
                        anyhow::anyhow!("LW_PUBLIC_URL is required with LW_GA_URL")
                    })?,
                })
            })
            .transpose()?;
        let retry_base = var("LW_OUTBOX_RETRY_BASE_MS")
            .map(|v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| (1..=600_000).contains(n))
                    .map(std::time::Duration::from_millis)
                    .ok_or_else(|| anyhow::anyhow!("LW_OUTBOX_RETRY_BASE_MS must be 1 to 600000"))
            })
            .transpose()?;
        Ok(ProcessorSettings {
            sendgrid,
            zendesk,
            cloudflare,
            analytics,
            give_up_after: seconds("LW_OUTBOX_GIVE_UP_SECONDS", 30 * 86_400)?,
            retry_base,
            lease: seconds("LW_OUTBOX_LEASE_SECONDS", 3600)?,
        })
    }
}

#[derive(Clone, Default)]
pub struct Settings {
    /// `LW_LISTEN`, default `127.0.0.1:8080`.
    pub listen: Option<SocketAddr>,
    /// `LW_DATABASE_URL`: PostgreSQL; unset = the embedded store.
    pub database_url: Option<String>,
    /// `LW_DATA_DIR`, default `./data`.
    pub data_dir: PathBuf,
    /// `LW_MASTER_KEY`: 32 bytes, base64. Embedded mode generates one into the data dir.
    pub master_key: Option<String>,
    /// `LW_MASTER_KEY_FILE`: the file holding the master key, kept apart from the data
    /// (embedded: generated there at first start; default `master.key` in the data dir).
    pub master_key_file: Option<PathBuf>,
    /// `LW_ADMIN_TOKEN`: generated and printed once at first start when unset.
    pub admin_token: Option<String>,
    /// `LW_CLOCK`.
    pub clock: ClockSetting,
    /// Unset: the demo sign-in (`demo:<username>`).
    pub instagram: Option<InstagramSettings>,
    /// `LW_PAYPAL_WEBHOOK_SECRET`: without it payments are refused (503).
    pub paypal_webhook_secret: Option<String>,
    /// `LW_POLICY_FILE`.
    pub policy_file: Option<PathBuf>,
    /// `LW_SWEEP_INTERVAL_SECONDS`: how often the retention sweep runs (default 60 s).
    pub sweep_every: Option<std::time::Duration>,
    /// `LW_REQUEST_TIMEOUT_SECONDS`: how long a request may take (default 30 s).
    pub request_timeout: Option<std::time::Duration>,
    /// The processors the outbox delivers to (unset: not configured).
    pub processors: ProcessorSettings,
    /// `LW_TRUSTED_PROXIES`: CIDRs of proxies whose `X-Forwarded-For` is believed (unset:
    /// the TCP peer is the client).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub rate_limits: RateLimits,
    /// `LW_TOKEN_TTL_HOURS`: how long owner and staff tokens work (the admin token excepted);
    /// default 720 hours.
    pub token_ttl: Option<std::time::Duration>,
    /// `LW_HEADER_TIMEOUT_SECONDS`: how long a connection may take to send a request head,
    /// and stay idle between requests (default 10 s).
    pub header_timeout: Option<std::time::Duration>,
    /// `LW_MAX_CONNECTIONS`: connections served at once (default 4096).
    pub max_connections: Option<usize>,
    /// `LW_MEMORY_MB`: the budget of the in-memory caches together, in MiB (default 256;
    /// see [`MemoryBudget`]).
    pub memory_mb: Option<u64>,
    /// `LW_DEMO_MEDIA_URL`: where the demo sign-in's photos are served (default
    /// `https://demo.lightwidget.invalid/media`; tests serve their own).
    pub demo_media_url: Option<String>,
    /// `LW_PUBLIC_URL`: where the public pages are served (the embed code names it); unset,
    /// the embed code names the host the owner's request came to.
    pub public_url: Option<String>,
    pub log: LogSettings,
}

/// `LW_MEMORY_MB` shared out among the caches, each weighed in bytes and evicting one entry
/// at a time (issue 28): the public page's widget documents a quarter, the read-model runners
/// half (an equal share each), owners and tokens a sixteenth each. The rest (an eighth) is
/// left for what is bounded by count rather than bytes: the runners' shared tail of the log
/// (8,192 events), the hit recorder's queue, the writer's stream versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: u64,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::mib(256)
    }
}

impl MemoryBudget {
    pub fn mib(mb: u64) -> Self {
        MemoryBudget { bytes: mb << 20 }
    }

    /// The public page's widget documents.
    pub fn page_documents(&self) -> u64 {
        self.bytes / 4
    }

    /// Each of `runners` read-model runners.
    pub fn runner(&self, runners: usize) -> u64 {
        self.bytes / 2 / runners.max(1) as u64
    }

    /// Owners' account status.
    pub fn owners(&self) -> u64 {
        self.bytes / 16
    }

    /// Tokens' grants.
    pub fn tokens(&self) -> u64 {
        self.bytes / 16
    }

    /// The embedded store's page caches, every connection together (`soft_heap_limit`).
    pub fn sqlite_pages(&self) -> u64 {
        self.bytes / 16
    }
}

/// The transparency log's key and the server's own witness file.
#[derive(Clone, Debug, Default)]
pub struct LogSettings {
    /// `LW_LOG_KEY_FILE`: the signing key, in Go's `sumdb/note` private-key format (default
    /// `log.key` in the data dir, generated at first start).
    pub key_file: Option<PathBuf>,
    /// `LW_LOG_ORIGIN`: the origin (key name) of a generated key; a key file's name must
    /// match it when both are given.
    pub origin: Option<String>,
    /// `LW_LOG_CHECKPOINT_FILE`: the last checkpoint the server signed (default
    /// `log.checkpoint` in the data dir).
    pub checkpoint_file: Option<PathBuf>,
    /// Whether the key and the checkpoint file live in files (the server) or the key is made
    /// up in memory for this process alone (tests' ephemeral servers, unless they name files).
    pub persistent: bool,
}

/// `LW_RATE_LIMIT_ANONYMOUS_PER_MINUTE` (per client IP, on anonymous writes; default 60) and
/// `LW_RATE_LIMIT_TOKEN_PER_MINUTE` (per token, on commands; default 600).
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    pub anonymous_per_minute: std::num::NonZeroU32,
    pub token_per_minute: std::num::NonZeroU32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            anonymous_per_minute: std::num::NonZeroU32::new(60)
                .unwrap_or(std::num::NonZeroU32::MIN),
            token_per_minute: std::num::NonZeroU32::new(600).unwrap_or(std::num::NonZeroU32::MIN),
        }
    }
}

impl RateLimits {
    fn from_env() -> anyhow::Result<Self> {
        let per_minute = |name: &str, default: std::num::NonZeroU32| -> anyhow::Result<_> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<std::num::NonZeroU32>()
                    .ok()
                    .filter(|n| n.get() <= 1_000_000)
                    .ok_or_else(|| anyhow::anyhow!("{name} must be 1 to 1000000 (per minute)")),
            }
        };
        let d = RateLimits::default();
        Ok(RateLimits {
            anonymous_per_minute: per_minute(
                "LW_RATE_LIMIT_ANONYMOUS_PER_MINUTE",
                d.anonymous_per_minute,
            )?,
            token_per_minute: per_minute("LW_RATE_LIMIT_TOKEN_PER_MINUTE", d.token_per_minute)?,
        })
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("embedded", &self.database_url.is_none())
            .field("data_dir", &self.data_dir)
            .field("clock", &self.clock)
            .field("instagram", &self.instagram)
            .finish_non_exhaustive()
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// A number of seconds from 1 to `max` in the variable `name`, if it is set.
fn seconds(name: &str, max: u64) -> anyhow::Result<Option<std::time::Duration>> {
    var(name)
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| anyhow::anyhow!("{name} must be 1 to {max} (seconds)"))
        })
        .transpose()
}

impl Settings {
    /// Settings for a server on an ephemeral port with the embedded defaults otherwise.
    pub fn ephemeral() -> Self {
        Settings {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            data_dir: "./data".into(),
            ..Default::default()
        }
    }

    /// How often the retention sweep runs.
    pub fn sweep_interval(&self) -> std::time::Duration {
        self.sweep_every
            .unwrap_or(std::time::Duration::from_secs(60))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn from_env() -> anyhow::Result<Self> {
        let listen = var("LW_LISTEN")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .map_err(|e| anyhow::anyhow!("LW_LISTEN is not an address like 127.0.0.1:8080: {e}"))?;
        let clock = match var("LW_CLOCK").as_deref() {
            None | Some("system") => ClockSetting::System,
            Some("manual") => ClockSetting::Manual,
            Some(_) => anyhow::bail!("LW_CLOCK must be `system` or `manual`"),
        };
        let instagram = match var("LW_INSTAGRAM_URL") {
            None => None,
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    anyhow::bail!("LW_INSTAGRAM_URL must be an http(s) URL");
                }
                Some(InstagramSettings {
                    url,
                    app_id: var("LW_INSTAGRAM_APP_ID").ok_or_else(|| {
                        anyhow::anyhow!("LW_INSTAGRAM_APP_ID is required with LW_INSTAGRAM_URL")
                    })?,
                    app_secret: var("LW_INSTAGRAM_APP_SECRET").ok_or_else(|| {
                        anyhow::anyhow!("LW_INSTAGRAM_APP_SECRET is required with LW_INSTAGRAM_URL")
                    })?,
                    redirect_uri: var("LW_INSTAGRAM_REDIRECT_URI")
                        .unwrap_or_else(|| "http://localhost/".into()),
                })
            }
        };
        let admin_token = var("LW_ADMIN_TOKEN");
        if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            anyhow::bail!("LW_ADMIN_TOKEN must be at least 16 characters");
        }
        Ok(Settings {
            listen: Some(listen),
            database_url: var("LW_DATABASE_URL"),
            data_dir: var("LW_DATA_DIR").unwrap_or_else(|| "./data".into()).into(),
            master_key: var("LW_MASTER_KEY"),
            master_key_file: var("LW_MASTER_KEY_FILE").map(PathBuf::from),
            admin_token,
            clock,
            instagram,
            paypal_webhook_secret: var("LW_PAYPAL_WEBHOOK_SECRET"),
            policy_file: var("LW_POLICY_FILE").map(PathBuf::from),
            request_timeout: seconds("LW_REQUEST_TIMEOUT_SECONDS", 3600)?,
            sweep_every: seconds("LW_SWEEP_INTERVAL_SECONDS", 86_400)?,
            processors: ProcessorSettings::from_env()?,
            trusted_proxies: crate::client_ip::parse_trusted(
                &var("LW_TRUSTED_PROXIES").unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("LW_TRUSTED_PROXIES: {e}"))?,
            rate_limits: RateLimits::from_env()?,
            header_timeout: seconds("LW_HEADER_TIMEOUT_SECONDS", 3600)?,
            public_url: url_setting("LW_PUBLIC_URL")?,
            demo_media_url: url_setting("LW_DEMO_MEDIA_URL")?,
            memory_mb: var("LW_MEMORY_MB")
                .map(|v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| (16..=1_048_576).contains(n))
                        .ok_or_else(|| anyhow::anyhow!("LW_MEMORY_MB must be 16 to 1048576"))
                })
                .transpose()?,
            max_connections: var("LW_MAX_CONNECTIONS")
                .map(|v| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .ok_or_else(|| anyhow::anyhow!("LW_MAX_CONNECTIONS must be 1 to 1000000"))
                })
                .transpose()?,
            token_ttl: var("LW_TOKEN_TTL_HOURS")
                .map(|v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|h| (1..=87_600).contains(h))
                        .map(|h| std::time::Duration::from_secs(h * 3600))
                        .ok_or_else(|| anyhow::anyhow!("LW_TOKEN_TTL_HOURS must be 1 to 87600"))
                })
                .transpose()?,
            log: LogSettings {
                key_file: var("LW_LOG_KEY_FILE").map(PathBuf::from),
                origin: var("LW_LOG_ORIGIN"),
                checkpoint_file: var("LW_LOG_CHECKPOINT_FILE").map(PathBuf::from),
                persistent: true,
            },
        })
    }
}
