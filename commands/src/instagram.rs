//! The Instagram port (R5, R7): exchange an OAuth code for an access token and the user's
//! profile, and read the user's media. Its adapters (HTTP, and the demo one used when no
//! Instagram settings are given) live with the server.
//!
//! What Instagram returns is read into [`InstagramProfile`], which has no field for an
//! e-mail address or a password: they cannot be stored (R5).

use lightwidget_domain::event::{InstagramProfile, MediaItem};

/// A successful exchange: who signed in, and the token Instagram gave us for them.
#[derive(Clone)]
pub struct SignedIn {
    pub profile: InstagramProfile,
    pub access_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InstagramError {
    /// Instagram refused the code (expired, used, forged).
    #[error("Instagram refused the code")]
    Refused,
    /// Instagram could not be reached or answered nonsense.
    #[error("Instagram is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait::async_trait]
pub trait Instagram: Send + Sync {
    async fn exchange(&self, code: &str) -> Result<SignedIn, InstagramError>;
    /// The user's recent media, read with their access token (R7: cached at most 24 hours).
    async fn media(&self, access_token: &str) -> Result<Vec<MediaItem>, InstagramError>;
}
