//! Request headers given as text (`-H "Name: value"`, or a `headers:` entry of the manager's
//! config): the one place that decides whether such a header can be sent. A header that would
//! corrupt the request (CR or LF in the value, a name that is not an RFC 7230 token) is refused
//! before any load, instead of being written raw on the wire.

/// Why a header given as text cannot be sent. Each message quotes the header (escaped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// No `:` between name and value.
    #[error("invalid header {0:?}: missing ':' (expected \"Name: value\")")]
    MissingColon(String),
    /// Nothing before the `:`.
    #[error("invalid header {0:?}: empty header name (expected \"Name: value\")")]
    EmptyName(String),
    /// The name has a character outside RFC 7230's token set (letters, digits, ``!#$%&'*+-.^_`|~``).
    #[error("invalid header {header:?}: header name {name:?} contains {bad:?}, which is not allowed in a header name (RFC 7230 token)")]
    InvalidName {
        /// The header as given.
        header: String,
        /// The name part.
        name: String,
        /// The first character not allowed.
        bad: char,
    },
    /// The value holds CR, LF or NUL, which would end the header line (or the request) early.
    #[error("invalid header {header:?}: the value contains {what}, which would split the request")]
    InvalidValue {
        /// The header as given.
        header: String,
        /// `CR`, `LF` or `NUL`.
        what: &'static str,
    },
}

/// True for RFC 7230 `tchar`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses `Name: value` into its name and value. Whitespace after the `:` and at the end of the
/// value is optional whitespace (RFC 7230 OWS) and is dropped; whitespace before the `:` is an
/// invalid name character (RFC 7230 forbids it). The value may be empty.
///
/// ```
/// use aefm_loadgen::parse_header;
/// assert_eq!(parse_header("X-Id: 42").unwrap(), ("X-Id".to_string(), "42".to_string()));
/// assert!(parse_header("X-Id 42").is_err());
/// assert!(parse_header("X-Id: 4\r\n2").is_err());
/// ```
pub fn parse_header(text: &str) -> Result<(String, String), HeaderError> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(HeaderError::MissingColon(text.to_string()));
    };
    if name.is_empty() {
        return Err(HeaderError::EmptyName(text.to_string()));
    }
    if let Some(bad) = name.chars().find(|c| !is_token_char(*c)) {
        return Err(HeaderError::InvalidName {
            header: text.to_string(),
            name: name.to_string(),
            bad,
        });
    }
    for (c, what) in [('\r', "CR"), ('\n', "LF"), ('\0', "NUL")] {
        if value.contains(c) {
            return Err(HeaderError::InvalidValue {
                header: text.to_string(),
                what,
            });
        }
    }
    let value = value.trim_matches([' ', '\t']);
    Ok((name.to_string(), value.to_string()))
}

/// Checks a header already split into name and value (as a [`crate::Spec`] holds it) by the
/// same rules as [`parse_header`].
pub fn check_header(name: &str, value: &str) -> Result<(), HeaderError> {
    parse_header(&format!("{name}: {value}")).map(|_| ())
}

/// Why a header file cannot be used. Messages name the file and line, never a value (the file
/// exists to keep secrets out of sight).
#[derive(Debug, thiserror::Error)]
pub enum HeaderFileError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a valid header.
    #[error("{} line {line}: {what} (expected \"Name: value\")", path.display())]
    Line {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, without the line's text.
        what: &'static str,
    },
}

/// Reads a header file (`aefm-load --header-file`): one `Name: value` a line, blank lines and
/// `#` comments skipped, each line checked as [`parse_header`] checks `-H`.
pub fn read_header_file(path: &std::path::Path) -> Result<Vec<(String, String)>, HeaderFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| HeaderFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let h = parse_header(line).map_err(|e| HeaderFileError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            what: match e {
                HeaderError::MissingColon(_) => "missing ':'",
                HeaderError::EmptyName(_) => "empty header name",
                HeaderError::InvalidName { .. } => "invalid header name",
                HeaderError::InvalidValue { .. } => "invalid character in the value",
            },
        })?;
        out.push(h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_name_value_with_optional_whitespace() {
        let ok = |t: &str| parse_header(t).unwrap();
        assert_eq!(ok("Host: x"), ("Host".into(), "x".into()));
        assert_eq!(ok("X-A:b"), ("X-A".into(), "b".into()));
        assert_eq!(ok("X-A:  b c \t"), ("X-A".into(), "b c".into()));
        assert_eq!(ok("X-Empty:"), ("X-Empty".into(), "".into()));
        assert_eq!(
            ok("Authorization: a:b"),
            ("Authorization".into(), "a:b".into())
        );
        assert_eq!(
            ok("x!#$%&'*+-.^_`|~9: v"),
            ("x!#$%&'*+-.^_`|~9".into(), "v".into())
        );
    }

    #[test]
    fn rejects_with_a_message_naming_the_header() {
        for (text, needle) in [
            ("novalue", "missing ':'"),
            (": v", "empty header name"),
            ("X A: v", "' '"),
            ("X-A : v", "' '"),
            ("X(A): v", "'('"),
            ("Ä: v", "'Ä'"),
            ("X-A: v\r\nEvil: 1", "CR"),
            ("X-A: v\nEvil: 1", "LF"),
            ("X-A: v\0", "NUL"),
        ] {
            let e = parse_header(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains(&format!("{text:?}")), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: {e}");
        }
        assert!(check_header("X", "a\r\nb").is_err());
        assert!(check_header("X", "ok").is_ok());
    }
}
