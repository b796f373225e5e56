//! The lease files of the DHCP clients Ringfence reads, and smb.conf. Pure.
//!
//! - ISC dhclient (also NetworkManager with `dhcp=dhclient`): a text database of
//!   `lease { ... }` blocks, appended at each renewal, so the last block of an
//!   interface is its current lease.
//! - systemd-networkd (and NetworkManager's internal client before 1.20): the
//!   `KEY=VALUE` file of systemd's DHCP library, one per link, removed when the
//!   lease is lost. It records no WINS servers.
//! - dhcpcd: the DHCP message of the server's ACK, as received (a BOOTP header
//!   and options); the lease starts at the file's modification time.
//!
//! DHCPv6 clients record the server's DUID, not its address, so nothing here
//! is IPv6.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use crate::policy::text::Quoted;

/// What a lease says about its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub interface: String,
    /// The server that granted it (DHCP option 54, server identifier).
    pub server: Ipv4Addr,
    /// NetBIOS name servers (DHCP option 44).
    pub wins: Vec<Ipv4Addr>,
    /// Domain name servers (DHCP option 6).
    pub dns: Vec<Ipv4Addr>,
    /// `None`: never, or not recorded (the client removes the file).
    pub expires: Option<SystemTime>,
}

/// Parses a lease file of any supported client, told apart by content. `name`
/// is the file name (networkd and dhcpcd name files after the interface),
/// `mtime` its modification time. `Err` for a file that is not whole.
pub fn parse(name: &str, bytes: &[u8], mtime: SystemTime) -> Result<Vec<Lease>, String> {
    if bytes.is_empty() {
        return Err("empty (being rewritten?)".into());
    }
    if bytes.len() >= DHCP_OPTIONS && bytes[DHCP_OPTIONS - 4..DHCP_OPTIONS] == MAGIC_COOKIE {
        return dhcpcd(name, bytes, mtime).map(|l| vec![l]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "neither text nor a DHCP message".to_string())?;
    if text.lines().any(is_systemd_line) {
        systemd(name, text).map(|l| vec![l])
    } else {
        dhclient(text)
    }
}

/// `SERVER_ADDRESS=...`: an upper-case key, `=`, the value.
fn is_systemd_line(line: &str) -> bool {
    line.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

// ---------------------------------------------------------------- dhclient

enum Token {
    Word(String),
    Open,
    Close,
    Semicolon,
}

/// Words (quoted strings unquoted), braces and semicolons, each with its line;
/// commas separate list items like spaces; `#` starts a comment.
fn tokens(text: &str) -> Result<Vec<(usize, Token)>, String> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() || c == ',' => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '{' => out.push((line, Token::Open)),
            '}' => out.push((line, Token::Close)),
            ';' => out.push((line, Token::Semicolon)),
            '"' => {
                let start = line;
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("line {start}: unterminated string")),
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(c) => {
                            line += usize::from(c == '\n');
                            word.push(c);
                        }
                    }
                }
                out.push((start, Token::Word(word)));
            }
            c => {
                let mut word = c.to_string();
                while let Some(c) = chars.next_if(|&c| !c.is_whitespace() && !",{};\"#".contains(c)) {
                    word.push(c);
                }
                out.push((line, Token::Word(word)));
            }
        }
    }
    Ok(out)
}

/// `words;` or `words { statements }`.
struct Statement {
    words: Vec<String>,
    block: Vec<Statement>,
}

/// dhclient writes `lease { option { ... } }` at most; deeper nesting is not a
/// lease file, and the bound keeps a crafted one from exhausting the stack.
const MAX_DEPTH: usize = 8;

fn statements(
    tokens: &mut std::vec::IntoIter<(usize, Token)>,
    opened_at: Option<usize>,
    depth: usize,
) -> Result<Vec<Statement>, String> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    while let Some((line, token)) = tokens.next() {
        match token {
            Token::Word(w) => words.push(w),
            Token::Semicolon => out.push(Statement { words: std::mem::take(&mut words), block: Vec::new() }),
            Token::Open if depth >= MAX_DEPTH => {
                return Err(format!("line {line}: blocks nested more than {MAX_DEPTH} deep"))
            }
            Token::Open => {
                let block = statements(tokens, Some(line), depth + 1)?;
                out.push(Statement { words: std::mem::take(&mut words), block });
            }
            Token::Close if opened_at.is_some() && words.is_empty() => return Ok(out),
            Token::Close => return Err(format!("line {line}: unexpected '}}'")),
        }
    }
    match opened_at {
        Some(line) => Err(format!("the block opened on line {line} is not closed (file cut short?)")),
        None if !words.is_empty() => Err(format!("the file ends inside a statement: {}", Quoted(&words.join(" ")))),
        None => Ok(out),
    }
}

/// The current lease of each interface: the last `lease` block naming it
/// (`lease6` blocks hold no server address and are left out).
fn dhclient(text: &str) -> Result<Vec<Lease>, String> {
    let top = statements(&mut tokens(text)?.into_iter(), None, 0)?;
    let mut leases: Vec<Lease> = Vec::new();
    for block in top.iter().filter(|s| s.words == ["lease"]) {
        let lease = dhclient_lease(&block.block)?;
        leases.retain(|l| l.interface != lease.interface);
        leases.push(lease);
    }
    Ok(leases)
}

fn dhclient_lease(block: &[Statement]) -> Result<Lease, String> {
    let (mut interface, mut server, mut expires) = (None, None, None);
    let (mut wins, mut dns) = (Vec::new(), Vec::new());
    for s in block {
        let w: Vec<&str> = s.words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["interface", name] => interface = Some(name.to_string()),
            ["option", "dhcp-server-identifier", a] => server = Some(ipv4(a)?),
            ["option", "netbios-name-servers", list @ ..] => wins = ipv4s(list)?,
            ["option", "domain-name-servers", list @ ..] => dns = ipv4s(list)?,
            ["expire", "never"] => expires = None,
            ["expire", "epoch", secs] => expires = Some(epoch(secs)?),
            // `expire W YYYY/MM/DD HH:MM:SS`: weekday, date and time in UTC.
            ["expire", _weekday, date, time] => {
                let stamp = format!("{}T{time}Z", date.replace('/', "-"));
                let bad = |e| format!("cannot read the expiry {}: {e}", Quoted(&format!("{date} {time}")));
                expires = Some(humantime::parse_rfc3339(&stamp).map_err(bad)?);
            }
            ["expire", ..] => return Err(format!("cannot read the expiry {}", Quoted(&w.join(" ")))),
            _ => {}
        }
    }
    Ok(Lease {
        interface: interface.ok_or("a lease names no interface")?,
        server: server.ok_or("a lease has no dhcp-server-identifier")?,
        wins,
        dns,
        expires,
    })
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("{} is not an IPv4 address", Quoted(s)))
}

fn ipv4s(list: &[&str]) -> Result<Vec<Ipv4Addr>, String> {
    list.iter().map(|a| ipv4(a)).collect()
}

fn epoch(s: &str) -> Result<SystemTime, String> {
    let not_a_time = || format!("{} is not a time in seconds", Quoted(s));
    let secs: u64 = s.parse().map_err(|_| not_a_time())?;
    // SystemTime holds signed seconds: u64::MAX would overflow it (a panic with `+`).
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)).ok_or_else(not_a_time)
}

// ---------------------------------------------------------------- systemd

/// networkd names the file after the link's index; NetworkManager
/// `internal-<connection uuid>-<interface>.lease`.
fn systemd(name: &str, text: &str) -> Result<Lease, String> {
    let value = |key: &str| {
        text.lines().rev().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().trim_matches('"'))
    };
    let server = match value("SERVER_ADDRESS") {
        Some(a) => ipv4(a)?,
        // NetworkManager's internal client (since 1.20) keeps only the address.
        None if value("ADDRESS").is_some() => return Err("the lease records no SERVER_ADDRESS".into()),
        None => return Err("not a lease file (no ADDRESS or SERVER_ADDRESS)".into()),
    };
    let interface = match name.strip_prefix("internal-").and_then(after_uuid) {
        Some(interface) => interface.trim_end_matches(".lease").to_string(),
        None if name.bytes().all(|b| b.is_ascii_digit()) => format!("{LINK}{name}"),
        None => name.to_string(),
    };
    let dns = ipv4s(&value("DNS").unwrap_or_default().split_whitespace().collect::<Vec<_>>())?;
    Ok(Lease { interface, server, wins: Vec::new(), dns, expires: None })
}

/// networkd's leases name their interface `link INDEX`.
const LINK: &str = "link ";

/// The index of a lease's interface, if the lease names it by index (networkd).
pub fn link_index(interface: &str) -> Option<u32> {
    interface.strip_prefix(LINK)?.parse().ok()
}

/// What follows `UUID-` (36 characters of hex digits and dashes, then a dash),
/// if `rest` starts so. The file name is anyone's choice, so it is checked
/// byte by byte rather than cut at byte 37 (which may fall inside a character).
fn after_uuid(rest: &str) -> Option<&str> {
    let (uuid, tail) = rest.split_at_checked(36)?;
    let interface = tail.strip_prefix('-')?;
    let is_uuid = uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (is_uuid && !interface.is_empty()).then_some(interface)
}

// ---------------------------------------------------------------- dhcpcd

/// Options start after the 236-byte BOOTP header and the 4-byte magic cookie.
const DHCP_OPTIONS: usize = 240;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const OPT_PAD: u8 = 0;
const OPT_DNS: u8 = 6;
const OPT_WINS: u8 = 44;
const OPT_LEASE_TIME: u8 = 51;
const OPT_SERVER_ID: u8 = 54;
const OPT_END: u8 = 255;

/// dhcpcd names the file `<interface>.lease` (`<interface>-<ssid>.lease` on wireless).
fn dhcpcd(name: &str, bytes: &[u8], mtime: SystemTime) -> Result<Lease, String> {
    let (mut server, mut expires) = (None, None);
    let (mut wins, mut dns) = (Vec::new(), Vec::new());
    let mut rest = &bytes[DHCP_OPTIONS..];
    loop {
        match rest {
            [] => return Err("the DHCP options end without an end option (file cut short?)".into()),
            [OPT_END, ..] => break,
            [OPT_PAD, tail @ ..] => rest = tail,
            [code, len, tail @ ..] if tail.len() >= usize::from(*len) => {
                let (value, tail) = tail.split_at(usize::from(*len));
                match (*code, value) {
                    (OPT_SERVER_ID, &[a, b, c, d]) => server = Some(Ipv4Addr::new(a, b, c, d)),
                    (OPT_WINS, v) if v.len() % 4 == 0 => wins = addresses(v),
                    (OPT_DNS, v) if v.len() % 4 == 0 => dns = addresses(v),
                    // 0xffffffff is an infinite lease.
                    (OPT_LEASE_TIME, &[a, b, c, d]) => {
                        let secs = u32::from_be_bytes([a, b, c, d]);
                        expires = (secs != u32::MAX).then(|| mtime + Duration::from_secs(secs.into()));
                    }
                    (OPT_SERVER_ID | OPT_WINS | OPT_DNS | OPT_LEASE_TIME, _) => {
                        return Err(format!("DHCP option {code} is malformed"))
                    }
                    _ => {}
                }
                rest = tail;
            }
            _ => return Err("a DHCP option runs past the end of the file (file cut short?)".into()),
        }
    }
    Ok(Lease {
        interface: name.trim_end_matches(".lease").to_string(),
        server: server.ok_or("the DHCP message has no server identifier (option 54)")?,
        wins,
        dns,
        expires,
    })
}

/// A list option's IPv4 addresses, 4 bytes each.
fn addresses(value: &[u8]) -> Vec<Ipv4Addr> {
    value.chunks(4).map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3])).collect()
}

// ---------------------------------------------------------------- smb.conf

/// The `wins server` of smb.conf's `[global]` section. Samba ignores case and
/// spaces in parameter names, continues lines ending in `\`, and takes
/// `tag:address` items (one WINS server per tag); the last setting wins.
pub fn smb_wins(text: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut servers = Vec::new();
    let mut section = String::from("global");
    let mut logical = String::new();
    let mut first_line = 0;
    for (n, line) in text.lines().enumerate() {
        if logical.is_empty() {
            first_line = n + 1;
        }
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(line);
        let l = std::mem::take(&mut logical);
        let l = l.trim();
        if l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[') {
            section = name.trim_end_matches(']').trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = l.split_once('=') else { continue };
        let key: String = key.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        if section == "global" && key == "winsserver" {
            servers = value
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|item| !item.is_empty())
                .map(|item| ipv4(item.rsplit(':').next().unwrap_or(item)))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("line {first_line}: wins server: {e}"))?;
        }
    }
    Ok(servers)
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
