//! The C2SP `tlog-proof@v1` document: an offline-verifiable proof that a leaf is in a log,
//! made of optional opaque `extra` data, the leaf's index, its RFC 6962 inclusion path (from
//! the leaf's sibling up to the root's child) and the signed checkpoint of the tree it is in.

use crate::tree::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a proof document was refused before any hash was checked.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("the first line is not `{HEADER}`")]
    Header,
    #[error("the extra data is not base64")]
    Extra,
    #[error("no `index` line (a decimal without leading zeroes)")]
    Index,
    #[error("line {0} of the inclusion path is not a base64 SHA-256 hash")]
    PathHash(usize),
    #[error("no empty line before the checkpoint")]
    NoCheckpoint,
}

/// A parsed `tlog-proof@v1` document.
#[derive(Clone, Debug, PartialEq)]
pub struct TlogProof {
    /// Unauthenticated data for the application (here: the preimage of the leaf's data).
    pub extra: Option<Vec<u8>>,
    /// The zero-based leaf index.
    pub index: u64,
    pub path: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The document's text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            out.push_str(&B64.encode(h.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a document; the hashes and the signature are checked by the caller.
    pub fn parse(text: &str) -> Result<TlogProof, FormatError> {
        let (head, checkpoint) = text.split_once("\n\n").ok_or(FormatError::NoCheckpoint)?;
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(HEADER) {
            return Err(FormatError::Header);
        }
        let extra = match lines.peek().and_then(|l| l.strip_prefix("extra ")) {
            Some(e) => {
                let bytes = B64.decode(e).map_err(|_| FormatError::Extra)?;
                lines.next();
                Some(bytes)
            }
            None => None,
        };
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .filter(|d| *d == "0" || !d.starts_with('0'))
            .and_then(|d| d.parse().ok())
            .ok_or(FormatError::Index)?;
        let path = lines
            .enumerate()
            .map(|(i, l)| decode_hash(l).ok_or(FormatError::PathHash(i + 1)))
            .collect::<Result<_, _>>()?;
        Ok(TlogProof {
            extra,
            index,
            path,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// A hash as standard base64 (how this log's hashes travel).
pub fn encode_hash(h: &Hash) -> String {
    B64.encode(h.0)
}

/// A standard-base64 SHA-256 hash; `None` when it is not one.
pub fn decode_hash(s: &str) -> Option<Hash> {
    let bytes: [u8; 32] = B64.decode(s.trim()).ok()?.try_into().ok()?;
    Some(Hash(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TlogProof {
        TlogProof {
            extra: Some(b"preimage".to_vec()),
            index: 73894,
            path: vec![Hash([1; 32]), Hash([2; 32])],
            checkpoint: "example.com/log\n3\nAAAA\n\n\u{2014} example.com/log abc=\n".into(),
        }
    }

    #[test]
    fn a_proof_reads_back_as_written() {
        let p = sample();
        assert_eq!(TlogProof::parse(&p.to_text()), Ok(p.clone()));
        let bare = TlogProof {
            extra: None,
            path: vec![],
            index: 0,
            ..p
        };
        let text = bare.to_text();
        assert!(
            text.starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\n"),
            "{text}"
        );
        assert_eq!(TlogProof::parse(&text), Ok(bare));
    }

    #[test]
    fn malformed_documents_are_refused_by_what_is_wrong() {
        let text = sample().to_text();
        let cases = [
            (text.replace("@v1", "@v2"), FormatError::Header),
            (
                text.replace("index 73894", "index 073894"),
                FormatError::Index,
            ),
            (text.replace("index 73894", "index -1"), FormatError::Index),
            (text.replace("index 73894\n", ""), FormatError::Index),
            (
                text.replace("extra cHJlaW1hZ2U=", "extra !!"),
                FormatError::Extra,
            ),
            (
                text.replace(&encode_hash(&Hash([2; 32])), "AAAA"),
                FormatError::PathHash(2),
            ),
            (text.replace("\n\n", "\n"), FormatError::NoCheckpoint),
        ];
        for (bad, why) in cases {
            assert_eq!(TlogProof::parse(&bad), Err(why.clone()), "{bad}");
        }
    }
}
