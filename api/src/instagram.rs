//! The Instagram adapters of the port in `lightwidget_commands::instagram`: HTTP against
//! `LW_INSTAGRAM_URL`, and the demo adapter (`demo:<username>`) used when no Instagram
//! settings are given.

use async_trait::async_trait;
pub use lightwidget_commands::instagram::{Instagram, InstagramError, SignedIn};
use lightwidget_domain::event::{InstagramProfile, MediaItem, MediaKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// At most this many media items are shown in a widget.
pub const MEDIA_LIMIT: usize = 24;

/// `demo:<username>` signs in as a stable demo user of that name, whose media are twelve
/// posts (images of several sizes, a video, a carousel) under `media_base`.
#[derive(Debug)]
pub struct DemoInstagram {
    pub media_base: String,
}

/// Where the demo's photos are, unless `LW_DEMO_MEDIA_URL` says otherwise.
pub const DEMO_MEDIA_BASE: &str = "https://demo.lightwidget.invalid/media";

impl Default for DemoInstagram {
    fn default() -> Self {
        DemoInstagram {
            media_base: DEMO_MEDIA_BASE.to_owned(),
        }
    }
}

#[async_trait]
impl Instagram for DemoInstagram {
    async fn exchange(&self, code: &str) -> Result<SignedIn, InstagramError> {
        let username = code.strip_prefix("demo:").ok_or(InstagramError::Refused)?;
        let valid = !username.is_empty()
            && username.len() <= 30
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(InstagramError::Refused);
        }
        let digest = Sha256::digest(format!("demo-instagram:{username}").as_bytes());
        let id = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % 10u64.pow(17);
        Ok(SignedIn {
            profile: InstagramProfile {
                instagram_user_id: format!("demo{id}"),
                username: username.to_owned(),
                profile_picture_url: None,
                account_type: "PERSONAL".into(),
            },
            access_token: format!("demo-token-{}", hex::encode(&digest[8..24])),
        })
    }

    /// Twelve stable posts per demo user: images of three shapes, every fifth a video (its
    /// still shown), every fifth from the fourth a carousel.
    async fn media(&self, access_token: &str) -> Result<Vec<MediaItem>, InstagramError> {
        let user = access_token
            .strip_prefix("demo-token-")
            .ok_or(InstagramError::Refused)?;
        let base = &self.media_base;
        Ok((1..=DEMO_POSTS)
            .map(|n| {
                let (width, height) = [(640, 640), (640, 800), (640, 480)][n % 3];
                let kind = match n % 5 {
                    2 => MediaKind::Video,
                    4 => MediaKind::Carousel,
                    _ => MediaKind::Image,
                };
                let (media_url, thumbnail_url) = match kind {
                    MediaKind::Video => (
                        format!("{base}/{user}/{n}.mp4"),
                        Some(format!("{base}/{user}/{n}.jpg")),
                    ),
                    _ => (format!("{base}/{user}/{n}.jpg"), None),
                };
                MediaItem {
                    id: format!("{user}-{n}"),
                    media_url,
                    caption: Some(format!("Demo post {n}")),
                    permalink: Some(format!("https://www.instagram.com/p/demo{user}{n}/")),
                    kind,
                    thumbnail_url,
                    width: Some(width),
                    height: Some(height),
                }
            })
            .collect())
    }
}

/// How many posts a demo user has.
pub const DEMO_POSTS: usize = 12;

/// The Instagram API over HTTP: `POST {base}/oauth/access_token` (form: `client_id`,
/// `client_secret`, `grant_type=authorization_code`, `redirect_uri`, `code`) answering
/// `{"access_token", "user_id"}`, then `GET {base}/me?fields=id,username,account_type`.
pub struct HttpInstagram {
    base: String,
    app_id: String,
    app_secret: String,
    redirect_uri: String,
    client: reqwest::Client,
}

impl HttpInstagram {
    pub fn new(base: &str, app_id: &str, app_secret: &str, redirect_uri: &str) -> Self {
        HttpInstagram {
            base: base.trim_end_matches('/').to_owned(),
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct MediaResponse {
    data: Vec<MediaEntry>,
}

/// Only these fields of a media entry are read.
#[derive(Deserialize)]
struct MediaEntry {
    id: String,
    #[serde(default)]
    media_url: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    permalink: Option<String>,
    /// `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`.
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    thumbnail_url: Option<String>,
}

/// Only these fields are read; whatever else Instagram sends is dropped unread.
#[derive(Deserialize)]
struct MeResponse {
    id: String,
    username: String,
    #[serde(default)]
    account_type: Option<String>,
    #[serde(default)]
    profile_picture_url: Option<String>,
}

fn unavailable(e: reqwest::Error) -> InstagramError {
    // reqwest's message may hold the URL with the code or token in its query: keep the kind.
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "unexpected response"
    } else {
        "request failed"
    };
    InstagramError::Unavailable(kind.into())
}

/// A 4xx is Instagram refusing (the code or token); anything else not 2xx is Instagram down.
fn checked(response: reqwest::Response, what: &str) -> Result<reqwest::Response, InstagramError> {
    let status = response.status();
    if status.is_client_error() {
        return Err(InstagramError::Refused);
    }
    if !status.is_success() {
        return Err(InstagramError::Unavailable(format!(
            "{what} status {status}"
        )));
    }
    Ok(response)
}

#[async_trait]
impl Instagram for HttpInstagram {
    async fn exchange(&self, code: &str) -> Result<SignedIn, InstagramError> {
        let response = self
            .client
            .post(format!("{}/oauth/access_token", self.base))
            .form(&[
                ("client_id", self.app_id.as_str()),
                ("client_secret", self.app_secret.as_str()),
                ("grant_type", "authorization_code"),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code", code),
            ])
            .send()
            .await
            .map_err(unavailable)?;
        let token: TokenResponse = checked(response, "token")?
            .json()
            .await
            .map_err(unavailable)?;
        let me = self
            .client
            .get(format!("{}/me", self.base))
            .query(&[
                ("fields", "id,username,account_type"),
                ("access_token", token.access_token.as_str()),
            ])
            .send()
            .await
            .map_err(unavailable)?;
        if !me.status().is_success() {
            return Err(InstagramError::Unavailable(format!(
                "profile status {}",
                me.status()
            )));
        }
        let me: MeResponse = me.json().await.map_err(unavailable)?;
        Ok(SignedIn {
            profile: InstagramProfile {
                instagram_user_id: me.id,
                username: me.username,
                profile_picture_url: me.profile_picture_url,
                account_type: me.account_type.unwrap_or_else(|| "PERSONAL".into()),
            },
            access_token: token.access_token,
        })
    }

    /// `GET {base}/me/media?fields=id,media_type,media_url,thumbnail_url,permalink,caption`
    /// answering `{"data": [...]}`; only `https` addresses are kept.
    async fn media(&self, access_token: &str) -> Result<Vec<MediaItem>, InstagramError> {
        let response = self
            .client
            .get(format!("{}/me/media", self.base))
            .query(&[
                (
                    "fields",
                    "id,media_type,media_url,thumbnail_url,permalink,caption",
                ),
                ("access_token", access_token),
            ])
            .send()
            .await
            .map_err(unavailable)?;
        let media: MediaResponse = checked(response, "media")?
            .json()
            .await
            .map_err(unavailable)?;
        Ok(media
            .data
            .into_iter()
            .filter_map(|m| {
                let https = |u: Option<String>| u.filter(|u| u.starts_with("https://"));
                let kind = match m.media_type.as_deref() {
                    Some("VIDEO") => MediaKind::Video,
                    Some("CAROUSEL_ALBUM") => MediaKind::Carousel,
                    _ => MediaKind::Image,
                };
                let thumbnail_url = https(m.thumbnail_url);
                // A video is shown by its still: without one, it is left out.
                if kind == MediaKind::Video && thumbnail_url.is_none() {
                    return None;
                }
                Some(MediaItem {
                    id: m.id,
                    media_url: https(m.media_url)?,
                    caption: m.caption.map(|c| c.chars().take(500).collect()),
                    permalink: https(m.permalink),
                    kind,
                    thumbnail_url,
                    width: None,
                    height: None,
                })
            })
            .take(MEDIA_LIMIT)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_users_are_stable_and_distinct() {
        let a = DemoInstagram::default()
            .exchange("demo:alice")
            .await
            .expect("alice");
        let again = DemoInstagram::default()
            .exchange("demo:alice")
            .await
            .expect("alice");
        let b = DemoInstagram::default()
            .exchange("demo:bob")
            .await
            .expect("bob");
        assert_eq!(a.profile.instagram_user_id, again.profile.instagram_user_id);
        assert_ne!(a.profile.instagram_user_id, b.profile.instagram_user_id);
        assert_eq!(a.profile.username, "alice");
    }

    #[tokio::test]
    async fn demo_refuses_other_codes() {
        for code in ["alice", "demo:", "demo:a b", "demo:<script>"] {
            assert!(matches!(
                DemoInstagram::default().exchange(code).await,
                Err(InstagramError::Refused)
            ));
        }
    }
}
