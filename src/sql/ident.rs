//! SQL identifiers as a DBA types them in psql, and their safe quoting.
//!
//! Unquoted names fold to lower case (ASCII only, as PostgreSQL does for UTF-8
//! databases); double-quoted names keep their exact bytes, with `""` standing
//! for one quote. Every identifier fkctl writes into SQL goes through
//! [`Ident::quoted`], so no user text ever reaches the server unquoted.

use std::fmt;

/// PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated by the
/// server, which would make fkctl act on a different object than the one named.
pub const MAX_IDENT_BYTES: usize = 63;

/// One identifier, holding the exact name stored in the catalog.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ident(String);

/// A schema-qualified relation name. A name written without a schema means `public`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct QualifiedName {
    pub schema: Ident,
    pub name: Ident,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentError {
    /// Offset in characters into the text where the problem was found.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for IdentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Ident {
    /// Builds an identifier from a name exactly as stored in the catalog
    /// (what `pg_class.relname` or `pg_attribute.attname` returns).
    pub fn from_catalog(name: impl Into<String>) -> Ident {
        Ident(name.into())
    }

    /// Parses exactly one identifier written as in SQL.
    pub fn parse(text: &str) -> Result<Ident, IdentError> {
        let parts = parse_dotted(text)?;
        match <[Ident; 1]>::try_from(parts) {
            Ok([one]) => Ok(one),
            Err(parts) => Err(IdentError {
                offset: 0,
                message: format!(
                    "expected one name, found {} dot-separated parts in {text:?} (quote the name if the dot belongs to it)",
                    parts.len()
                ),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier double-quoted for SQL, always (even when quoting is not
    /// needed): one rule, no keyword list to get wrong.
    pub fn quoted(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 2);
        out.push('"');
        for ch in self.0.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
        out
    }

    /// How a DBA would write it in psql: bare when that reads back the same, quoted otherwise.
    pub fn display(&self) -> String {
        let plain = !self.0.is_empty()
            && self
                .0
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
        if plain {
            self.0.clone()
        } else {
            self.quoted()
        }
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl QualifiedName {
    pub fn new(schema: Ident, name: Ident) -> QualifiedName {
        QualifiedName { schema, name }
    }

    /// Parses `name`, `schema.name`, with quoted parts allowed; no schema means `public`.
    pub fn parse(text: &str) -> Result<QualifiedName, IdentError> {
        let mut parts = parse_dotted(text)?;
        match parts.len() {
            1 => Ok(QualifiedName {
                schema: Ident("public".to_string()),
                name: parts.remove(0),
            }),
            2 => {
                let name = parts.remove(1);
                let schema = parts.remove(0);
                Ok(QualifiedName { schema, name })
            }
            n => Err(IdentError {
                offset: 0,
                message: format!(
                    "expected schema.table, found {n} dot-separated parts in {text:?} (a database name is not allowed here; quote a name that contains a dot)"
                ),
            }),
        }
    }

    /// `"schema"."name"`, for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.name.quoted())
    }

    /// `schema.name` as a DBA would type it.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema.display(), self.name.display())
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// Splits `a.b."c.d"` into identifiers, following PostgreSQL's lexer rules for
/// identifiers (not for keywords: every name is quoted on output anyway).
// Long because it is one small lexer (quoted and unquoted parts, doubled quotes, dots) whose states read best together.
fn parse_dotted(text: &str) -> Result<Vec<Ident>, IdentError> {
    let chars: Vec<char> = text.chars().collect();
    let err = |offset: usize, message: String| Err(IdentError { offset, message });
    let mut parts = Vec::new();
    let mut i = 0;
    loop {
        if i >= chars.len() {
            return err(i, format!("missing name after '.' in {text:?}"));
        }
        let start = i;
        let name = if chars[i] == '"' {
            i += 1;
            let mut name = String::new();
            loop {
                match chars.get(i) {
                    None => return err(start, format!("unterminated quoted name in {text:?}")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        name.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\0') => return err(i, "a name cannot contain a NUL character".into()),
                    Some(&c) => {
                        name.push(c);
                        i += 1;
                    }
                }
            }
            if name.is_empty() {
                return err(start, "zero-length quoted name \"\" is not allowed".into());
            }
            name
        } else {
            let first = chars[i];
            if !(first.is_ascii_alphabetic() || first == '_' || !first.is_ascii()) {
                return err(
                    i,
                    format!(
                        "{first:?} cannot start an unquoted name in {text:?}; write the name in double quotes, e.g. '\"{text}\"'"
                    ),
                );
            }
            let mut name = String::new();
            while let Some(&c) = chars.get(i) {
                if c == '.' {
                    break;
                }
                if !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii())
                    || c.is_whitespace()
                {
                    return err(
                        i,
                        format!(
                            "{c:?} is not allowed in an unquoted name in {text:?}; put the name in double quotes to keep it as written"
                        ),
                    );
                }
                name.push(c.to_ascii_lowercase());
                i += 1;
            }
            name
        };
        if name.len() > MAX_IDENT_BYTES {
            return err(
                start,
                format!(
                    "name {name:?} is {} bytes long; PostgreSQL keeps at most {MAX_IDENT_BYTES} and would silently truncate it",
                    name.len()
                ),
            );
        }
        parts.push(Ident(name));
        match chars.get(i) {
            None => return Ok(parts),
            Some('.') => i += 1,
            Some(c) => {
                return err(
                    i,
                    format!(
                        "unexpected {c:?} after a quoted name in {text:?}; expected '.' or the end"
                    ),
                )
            }
        }
    }
}

/// A SQL string literal, for the few places a value must appear in SQL text
/// that a human will also run by hand (change requests, post-checks).
/// fkctl sets `standard_conforming_strings = on` for its sessions, so only the
/// single quote needs doubling.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' {
            out.push('\'');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// A dollar-quote tag that does not occur in `body` (a quoted identifier
/// may contain `$`, so a fixed tag could end the body early).
pub fn dollar_tag(body: &str) -> String {
    let mut n = 0;
    loop {
        let tag = if n == 0 {
            "$fkctl$".to_string()
        } else {
            format!("$fkctl{n}$")
        };
        if !body.contains(&tag) {
            return tag;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_names_fold_to_lower_case() {
        assert_eq!(
            Ident::parse("Chat_Names").map(|i| i.0),
            Ok("chat_names".to_string())
        );
    }

    #[test]
    fn quoted_names_keep_case_spaces_and_quotes() {
        let q = QualifiedName::parse(r#""Billing"."Invoice ""Lines""""#);
        let q = q.ok();
        assert_eq!(q.as_ref().map(|q| q.schema.as_str()), Some("Billing"));
        assert_eq!(
            q.as_ref().map(|q| q.name.as_str()),
            Some(r#"Invoice "Lines""#)
        );
        assert_eq!(
            q.map(|q| q.quoted()),
            Some(r#""Billing"."Invoice ""Lines""""#.to_string())
        );
    }

    #[test]
    fn no_schema_means_public() {
        let q = QualifiedName::parse("chat_names").ok();
        assert_eq!(
            q.map(|q| q.quoted()),
            Some(r#""public"."chat_names""#.to_string())
        );
    }

    #[test]
    fn dots_inside_quotes_are_part_of_the_name() {
        let q = QualifiedName::parse(r#""a.b""#).ok();
        assert_eq!(q.map(|q| q.name.0), Some("a.b".to_string()));
    }

    #[test]
    fn rejects_what_postgres_cannot_hold() {
        for bad in [
            "",
            "a..b",
            "a.",
            "\"\"",
            "\"open",
            "1abc",
            "has space",
            "a-b",
            "a.b.c",
        ] {
            assert!(
                QualifiedName::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(Ident::parse(&"x".repeat(64)).is_err());
        assert!(Ident::parse(&"x".repeat(63)).is_ok());
        // 63 bytes is the limit, not 63 characters.
        assert!(Ident::parse(&format!("\"{}\"", "é".repeat(32))).is_err());
    }

    #[test]
    fn display_quotes_only_when_needed() {
        assert_eq!(Ident::from_catalog("chat_names").display(), "chat_names");
        assert_eq!(Ident::from_catalog("Chat").display(), "\"Chat\"");
        assert_eq!(
            Ident::from_catalog("Lines→Invoice").display(),
            "\"Lines→Invoice\""
        );
    }

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"'a\b'");
    }

    #[test]
    fn the_dollar_tag_never_occurs_in_the_body() {
        assert_eq!(dollar_tag("plain"), "$fkctl$");
        assert_eq!(dollar_tag("a $fkctl$ b"), "$fkctl1$");
        assert_eq!(dollar_tag("$fkctl$ $fkctl1$"), "$fkctl2$");
    }
}
