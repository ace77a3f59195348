//! Other sessions' queries, made safe to print and to store: every literal
//! (strings, dollar-quoted bodies, numbers) and every comment becomes `?`, so
//! a password, token or customer value typed into a query never reaches
//! fkctl's output or its journal. Identifiers and keywords stay, which is
//! what a DBA needs to recognise the query.

/// The query with literals and comments replaced by `?`, on one line.
pub fn redact_literals(query: &str) -> String {
    let chars: Vec<char> = query.chars().collect();
    let mut out = String::with_capacity(query.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_is_word = i > 0 && is_word(chars[i - 1]);
        if c == '-' && next == Some('-') {
            i = skip_line_comment(&chars, i);
            out.push(' ');
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i);
            out.push(' ');
        } else if c == '\'' {
            // E'..' allows backslash escapes; a plain '..' (standard strings) does not.
            let backslashes = out.ends_with(['E', 'e']) && !word_before_prefix(&out);
            if backslashes {
                out.pop();
            }
            i = skip_quoted(&chars, i, '\'', backslashes);
            out.push('?');
        } else if c == '"' {
            let end = skip_quoted(&chars, i, '"', false);
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '$' && !prev_is_word {
            match dollar_tag(&chars, i) {
                Some(tag) => {
                    i = skip_dollar_quoted(&chars, i, &tag);
                    out.push('?');
                }
                None => {
                    // A parameter ($1) or a lone dollar: keep it.
                    out.push(c);
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        out.push(chars[i]);
                        i += 1;
                    }
                }
            }
        } else if (c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())))
            && !prev_is_word
        {
            i = skip_number(&chars, i);
            out.push('?');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// True when the `E` just written is the end of a longer word (`TABLE'x'` is
/// not an escape string), false when it stands alone as the prefix.
fn word_before_prefix(out: &str) -> bool {
    let mut rev = out.chars().rev();
    rev.next();
    rev.next().is_some_and(is_word)
}

fn skip_line_comment(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i] != '\n' {
        i += 1;
    }
    i
}

fn skip_block_comment(chars: &[char], mut i: usize) -> usize {
    // Block comments nest in PostgreSQL.
    let mut depth = 0usize;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Index just past the closing quote; a doubled quote is an escaped one.
fn skip_quoted(chars: &[char], start: usize, quote: char, backslashes: bool) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if backslashes && chars[i] == '\\' {
            i += 2;
        } else if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// `$tag$` or `$$` starting at `start`, if that is what is there.
fn dollar_tag(chars: &[char], start: usize) -> Option<String> {
    let mut i = start + 1;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        if i == start + 1 && chars[i].is_ascii_digit() {
            return None;
        }
        i += 1;
    }
    (chars.get(i) == Some(&'$')).then(|| chars[start..=i].iter().collect())
}

fn skip_dollar_quoted(chars: &[char], start: usize, tag: &str) -> usize {
    let tag: Vec<char> = tag.chars().collect();
    let mut i = start + tag.len();
    while i < chars.len() {
        if chars[i..].starts_with(&tag) {
            return i + tag.len();
        }
        i += 1;
    }
    i
}

fn skip_number(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        let c = chars[i];
        let exponent_sign = (c == '+' || c == '-') && matches!(chars[i - 1], 'e' | 'E');
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_of_every_kind_are_removed() {
        assert_eq!(
            redact_literals("ALTER ROLE app PASSWORD 'hunter2'"),
            "ALTER ROLE app PASSWORD ?"
        );
        assert_eq!(
            redact_literals("SELECT 'it''s', E'a\\'b', x FROM t"),
            "SELECT ?, ?, x FROM t"
        );
        assert_eq!(
            redact_literals("DO $body$ BEGIN PERFORM 'x'; END $body$; SELECT $$s3cr3t$$"),
            "DO ?; SELECT ?"
        );
        assert_eq!(
            redact_literals("SELECT U&'d\\0061t\\+000061'"),
            "SELECT U&?"
        );
    }

    #[test]
    fn numbers_and_comments_go_identifiers_and_parameters_stay() {
        assert_eq!(
            redact_literals("SELECT t1.a, \"Col 9\" FROM t1 WHERE id = 42 AND x > 1.5e-3 -- card 4111\n AND y = $1 /* tok /* nested */ 7 */"),
            "SELECT t1.a, \"Col 9\" FROM t1 WHERE id = ? AND x > ? AND y = $1"
        );
        assert_eq!(redact_literals("UPDATE t SET v = .5"), "UPDATE t SET v = ?");
    }

    #[test]
    fn unterminated_input_is_still_redacted() {
        assert_eq!(redact_literals("SELECT 'never closed"), "SELECT ?");
        assert_eq!(redact_literals("SELECT $$open"), "SELECT ?");
    }
}
