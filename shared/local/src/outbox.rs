//! The local outbox: every message leaves as one RFC 5322 `.eml` file in a folder (usually
//! `<data dir>/outbox`), which any mail client opens, instead of through a mail server.
//!
//! - One file per message key, named after the key's SHA-256 (`<32 hex>.eml`). A key already in
//!   the outbox is not written again and answers the same Message-ID: sending the same key
//!   twice sends once, as the port promises, and a redelivered attempt sends nothing new.
//! - Written atomically: a temporary file, fsync, rename, fsync of the folder. A reader (or a
//!   crash) never sees half a message.
//! - Built with lettre's message builder: `From`, `To`, `Subject`, `Date` (the wall clock),
//!   `Message-ID` (`<hash@eventflow.local>`, derived from the key), `X-Eventflow-Key` and
//!   `X-Eventflow-Kind`, and a plain-text UTF-8 body.
//! - Notifications (kind `notify`) are `.eml` files too, so the whole outbox reads the same:
//!   from `eventflow <eventflow@eventflow.invalid>`, to `<channel> <notify@eventflow.invalid>`
//!   (the reserved `.invalid` domain: no such mailbox exists), with the channel also in
//!   `X-Eventflow-Channel`. Any kind other than `email` is written the same way.
//!
//! [`list`] reads the folder back for `eventflow outbox`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use eventflow_ports::{Message, Outbox, StoreError, StoreResult};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder};
use lettre::{Address, address::AddressError};
use sha2::{Digest, Sha256};

const KEY_HEADER: &str = "X-Eventflow-Key";
const KIND_HEADER: &str = "X-Eventflow-Kind";
const CHANNEL_HEADER: &str = "X-Eventflow-Channel";
/// Where the addresses that are not mailboxes (the sender of a notification, a channel) point:
/// a domain that cannot exist (RFC 2606).
const NOWHERE: &str = "eventflow.invalid";

/// An [`Outbox`] that writes `.eml` files into a folder, created when the first message is
/// sent.
#[derive(Debug, Clone)]
pub struct FileOutbox {
    dir: PathBuf,
}

impl FileOutbox {
    pub fn new(dir: impl Into<PathBuf>) -> FileOutbox {
        FileOutbox { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file the message keyed `key` is (or will be) in.
    pub fn file_of(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.eml", digest(key)))
    }

    fn send_now(&self, message: &Message) -> Result<String, SendError> {
        let hash = digest(&message.key);
        let id = format!("<{hash}@eventflow.local>");
        let path = self.dir.join(format!("{hash}.eml"));
        if path.exists() {
            return Ok(id);
        }
        let bytes = build(message, &id)?;
        fs::create_dir_all(&self.dir)?;
        write_atomically(&self.dir, &path, &bytes)?;
        tracing::debug!(key = %message.key, file = %path.display(), "message in the outbox");
        Ok(id)
    }
}

#[async_trait]
impl Outbox for FileOutbox {
    async fn send(&self, message: &Message) -> StoreResult<String> {
        let outbox = self.clone();
        let message = message.clone();
        // fsync blocks: keep it off the runtime's worker threads.
        tokio::task::spawn_blocking(move || outbox.send_now(&message))
            .await
            .map_err(StoreError::backend)?
            .map_err(StoreError::backend)
    }
}

/// Why a message could not be put in the outbox.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("`{address}` is not an email address: {source}")]
    Address {
        address: String,
        #[source]
        source: AddressError,
    },
    #[error("the message cannot be built: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("cannot write to the outbox: {0}")]
    Io(#[from] io::Error),
}

/// The first 128 bits of the key's SHA-256, in hex: the message's file name and Message-ID.
fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `user@domain` or `Display Name <user@domain>`.
fn mailbox(text: &str) -> Result<Mailbox, SendError> {
    let bad = |source| SendError::Address {
        address: text.to_owned(),
        source,
    };
    let text = text.trim();
    match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(rest)) => {
            let name = text[..open].trim().trim_matches('"').trim();
            let address: Address = rest[open + 1..].trim().parse().map_err(bad)?;
            Ok(Mailbox::new(
                (!name.is_empty()).then(|| name.to_owned()),
                address,
            ))
        }
        _ => Ok(Mailbox::new(None, text.parse().map_err(bad)?)),
    }
}

/// A name that is not an address, as a mailbox that goes nowhere: `name <user@eventflow.invalid>`.
fn nowhere(name: &str, user: &str) -> Result<Mailbox, SendError> {
    let address = Address::new(user, NOWHERE).map_err(|source| SendError::Address {
        address: format!("{user}@{NOWHERE}"),
        source,
    })?;
    Ok(Mailbox::new(Some(name.to_owned()), address))
}

fn raw_header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
}

/// The message as RFC 5322 bytes.
fn build(message: &Message, id: &str) -> Result<Vec<u8>, SendError> {
    let mut builder: MessageBuilder = lettre::Message::builder()
        .message_id(Some(id.to_owned()))
        .date_now()
        .subject(message.subject.clone())
        .raw_header(raw_header(KEY_HEADER, &message.key))
        .raw_header(raw_header(KIND_HEADER, &message.kind));
    if message.kind == "email" {
        builder = builder.from(mailbox(&message.from)?);
        for to in &message.to {
            builder = builder.to(mailbox(to)?);
        }
    } else {
        builder =
            builder.from(mailbox(&message.from).or_else(|_| nowhere(&message.from, "eventflow"))?);
        for to in &message.to {
            builder = builder.to(mailbox(to).or_else(|_| nowhere(to, "notify"))?);
        }
        builder = builder.raw_header(raw_header(CHANNEL_HEADER, &message.to.join(", ")));
    }
    let email = builder
        .header(ContentType::TEXT_PLAIN)
        .body(message.text.clone())?;
    Ok(email.formatted())
}

/// Writes `bytes` to `path` so that it is either absent or complete, even across a crash.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per writer, so two sends of one key at once never write into the same file.
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Makes the rename durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

// ---- reading the outbox back ---------------------------------------------------------------

/// One message in the outbox, as `eventflow outbox` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub file: PathBuf,
    /// `email` or `notify`.
    pub kind: String,
    /// The recipients as written in `To` (for a notification: its channel).
    pub to: String,
    pub subject: String,
    /// When it was written, RFC 3339 in UTC (as found in the file if it cannot be read).
    pub date: String,
    /// The idempotency key of the attempt that sent it.
    pub key: String,
}

/// The messages in `dir`, oldest first; none when the folder does not exist yet.
pub fn list(dir: &Path) -> io::Result<Vec<OutboxEntry>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let visible = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        if !visible || path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        let headers = headers(&text);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| decode_words(v.trim()))
                .unwrap_or_default()
        };
        let kind = header(KIND_HEADER);
        let to = match header(CHANNEL_HEADER) {
            channel if kind != "email" && !channel.is_empty() => channel,
            _ => header("To"),
        };
        let raw_date = header("Date");
        let when = chrono::DateTime::parse_from_rfc2822(&raw_date).ok();
        let date = when.map_or(raw_date, |d| {
            d.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        found.push((
            when,
            OutboxEntry {
                file: path,
                kind,
                to,
                subject: header("Subject"),
                date,
                key: header(KEY_HEADER),
            },
        ));
    }
    found.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.file.cmp(&y.file)));
    Ok(found.into_iter().map(|(_, e)| e).collect())
}

/// The header fields of a message, unfolded, up to the blank line before the body.
fn headers(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    fields
}

/// Decodes the RFC 2047 encoded words (`=?utf-8?b?...?=`) lettre writes for text that is not
/// plain ASCII; the space between two encoded words is not part of the text.
fn decode_words(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (literal, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((bytes, len)) => {
                if !(after_word && literal.trim().is_empty()) {
                    out.extend_from_slice(literal.as_bytes());
                }
                out.extend_from_slice(&bytes);
                rest = &candidate[len..];
                after_word = true;
            }
            None => {
                out.extend_from_slice(literal.as_bytes());
                out.extend_from_slice(b"=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// The bytes of the encoded word at the start of `s`, and its length.
fn encoded_word(s: &str) -> Option<(Vec<u8>, usize)> {
    let body = s.strip_prefix("=?")?;
    let mut parts = body.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let tail = parts.next()?;
    let end = tail.find("?=")?;
    let text = &tail[..end];
    if charset.is_empty()
        || [charset, encoding, text]
            .iter()
            .any(|p| p.contains(char::is_whitespace))
    {
        return None;
    }
    let bytes = match encoding {
        "b" | "B" => base64(text)?,
        "q" | "Q" => q_decode(text)?,
        _ => return None,
    };
    Some((bytes, 2 + charset.len() + 1 + encoding.len() + 1 + end + 2))
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().take_while(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(key: &str) -> Message {
        Message {
            key: key.to_owned(),
            kind: "email".to_owned(),
            from: "Lena Vogel <lena@rustnation.example>".to_owned(),
            to: vec![
                "list@rustnation.example".to_owned(),
                "Amira Haddad <amira@ferrous-cloud.example>".to_owned(),
            ],
            subject: "Rust Nation Berlin 2026: registration is open".to_owned(),
            text: "Hello,\n\nregistration is open.\n\nLena\n".to_owned(),
        }
    }

    fn eml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .expect("the outbox exists")
            .map(|e| e.expect("an entry").path())
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn an_email_is_one_eml_file_with_its_headers() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let outbox = FileOutbox::new(tmp.path().join("outbox"));
        let id = outbox
            .send(&email("exec-1/announce/-/1"))
            .await
            .expect("sent");
        let files = eml_files(outbox.dir());
        assert_eq!(files, [outbox.file_of("exec-1/announce/-/1")]);
        let text = fs::read_to_string(&files[0]).expect("readable");
        let (head, body) = text.split_once("\r\n\r\n").expect("headers, then the body");
        assert!(
            head.contains("From: \"Lena Vogel\" <lena@rustnation.example>"),
            "{head}"
        );
        assert!(head.contains("list@rustnation.example"), "{head}");
        assert!(head.contains("<amira@ferrous-cloud.example>"), "{head}");
        assert!(
            head.contains("Subject: Rust Nation Berlin 2026: registration is open"),
            "{head}"
        );
        assert!(head.contains(&format!("Message-ID: {id}")), "{head}");
        assert!(head.contains("Date: "), "{head}");
        assert!(
            head.contains("X-Eventflow-Key: exec-1/announce/-/1"),
            "{head}"
        );
        assert!(head.contains("X-Eventflow-Kind: email"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; charset=utf-8"),
            "{head}"
        );
        assert!(body.contains("registration is open."), "{body}");
        assert!(
            id.starts_with('<') && id.ends_with("@eventflow.local>"),
            "{id}"
        );
    }

    #[tokio::test]
    async fn the_same_key_twice_is_sent_once_with_the_same_id() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let outbox = FileOutbox::new(tmp.path());
        let first = outbox.send(&email("k/1")).await.expect("sent");
        let before = fs::read(outbox.file_of("k/1")).expect("written");
        let mut changed = email("k/1");
        changed.subject = "something else".to_owned();
        let again = outbox.send(&changed).await.expect("sent");
        assert_eq!(again, first);
        assert_eq!(fs::read(outbox.file_of("k/1")).expect("written"), before);
        let other = outbox.send(&email("k/2")).await.expect("sent");
        assert_ne!(other, first);
        assert_eq!(eml_files(tmp.path()).len(), 2, "no temporary file is left");
    }

    #[tokio::test]
    async fn a_notification_is_an_eml_to_its_channel() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let outbox = FileOutbox::new(tmp.path());
        outbox
            .send(&Message {
                key: "exec-1/tell_team/-/1".to_owned(),
                kind: "notify".to_owned(),
                from: "eventflow".to_owned(),
                to: vec!["event-ops".to_owned()],
                subject: "[warning] 1 deliverable is overdue".to_owned(),
                text: "1 deliverable is overdue\n\n- Sponsor logo\n".to_owned(),
            })
            .await
            .expect("sent");
        let text = fs::read_to_string(outbox.file_of("exec-1/tell_team/-/1")).expect("written");
        assert!(
            text.contains("From: eventflow <eventflow@eventflow.invalid>"),
            "{text}"
        );
        assert!(
            text.contains("To: event-ops <notify@eventflow.invalid>"),
            "{text}"
        );
        assert!(text.contains("X-Eventflow-Channel: event-ops"), "{text}");
        let listed = list(tmp.path()).expect("listed");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].kind, "notify");
        assert_eq!(listed[0].to, "event-ops");
        assert_eq!(listed[0].subject, "[warning] 1 deliverable is overdue");
    }

    #[tokio::test]
    async fn a_bad_address_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let outbox = FileOutbox::new(tmp.path().join("outbox"));
        let mut bad = email("k/1");
        bad.to = vec!["not an address".to_owned()];
        let err = outbox.send(&bad).await.expect_err("refused");
        assert!(err.to_string().contains("not an address"), "{err}");
        assert!(!outbox.dir().exists());
    }

    #[tokio::test]
    async fn list_reads_back_what_was_sent_including_text_that_is_not_ascii() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let outbox = FileOutbox::new(tmp.path());
        let mut greek = email("k/1");
        greek.subject = "Grüße aus Berlin — ein sehr langer Betreff, der über mehrere Zeilen gefaltet werden muss, weil er so lang ist".to_owned();
        greek.to = vec!["Jürgen Groß <juergen@example.org>".to_owned()];
        outbox.send(&greek).await.expect("sent");
        fs::write(tmp.path().join("notes.txt"), "not a message").expect("written");
        let listed = list(tmp.path()).expect("listed");
        assert_eq!(listed.len(), 1);
        let e = &listed[0];
        assert_eq!(e.subject, greek.subject);
        assert_eq!(e.kind, "email");
        assert_eq!(e.key, "k/1");
        assert!(e.to.contains("Jürgen Groß"), "{}", e.to);
        assert!(e.to.contains("<juergen@example.org>"), "{}", e.to);
        assert!(e.date.ends_with('Z') && e.date.len() == 20, "{}", e.date);
        assert_eq!(e.file, outbox.file_of("k/1"));
    }

    #[test]
    fn list_of_a_folder_that_does_not_exist_is_empty() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        assert_eq!(list(&tmp.path().join("outbox")).expect("listed"), []);
    }

    #[test]
    fn encoded_words_decode_and_plain_text_stays() {
        assert_eq!(decode_words("=?utf-8?b?QWRyacOhbg==?="), "Adrián");
        assert_eq!(
            decode_words("=?utf-8?b?R3LDvA==?= =?utf-8?b?w59l?="),
            "Grüße"
        );
        assert_eq!(decode_words("=?ISO-8859-1?Q?a_b=3Dc?="), "a b=c");
        assert_eq!(decode_words("plain =? not encoded"), "plain =? not encoded");
        assert_eq!(decode_words("x =?utf-8?b?QQ==?= y"), "x A y");
    }
}
