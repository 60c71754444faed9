//! Text from files or the system shown in error messages, capped: a message never carries more
//! than a little of a file (pointing the worker at postgresql.conf must not copy it into the
//! logs and the ledger), and always stays on one line.

/// `s` cut to at most `max_chars` characters on a character boundary, `…` included when cut.
/// Control characters are shown escaped (`\n`, `\u{1b}`), so a message stays on one line and
/// cannot drive a terminal; an escape counts for the characters it takes.
pub fn excerpt(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    // Length of `out` at the last whole piece that still leaves room for the ellipsis.
    let mut fits = 0;
    for c in s.chars() {
        let start = out.len();
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        used += out[start..].chars().count();
        if used > max_chars {
            out.truncate(fits);
            if max_chars > 0 {
                out.push('…');
            }
            return out;
        }
        if used < max_chars {
            fits = out.len();
        }
    }
    out
}

/// The first of `names` to show in a list: each excerpted to `each_chars` characters, at most
/// `max_names` of them, and at most `max_bytes` bytes once joined with ", "; and how many more
/// were left out (for a `… and N more`). The order is kept: after the first name left out, all
/// later ones are left out too.
pub fn name_list(
    names: impl IntoIterator<Item = impl AsRef<str>>,
    each_chars: usize,
    max_names: usize,
    max_bytes: usize,
) -> (Vec<String>, usize) {
    let mut shown = Vec::new();
    let mut bytes = 0;
    let mut more = 0;
    for n in names {
        if more > 0 || shown.len() >= max_names {
            more += 1;
            continue;
        }
        let e = excerpt(n.as_ref(), each_chars);
        if bytes + e.len() > max_bytes {
            more += 1;
            continue;
        }
        bytes += e.len() + 2;
        shown.push(e);
    }
    (shown, more)
}

/// `names` quoted and joined with ", " for a message, capped (see [`name_list`]), with
/// `… and N more` when some were left out.
pub fn quoted_list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let (shown, more) = name_list(names, 64, 20, 1024);
    let mut s = shown
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        s.push_str(&format!(" … and {more} more"));
    }
    if s.is_empty() {
        s.push_str("(none)");
    }
    s
}

/// Bytes of a file shown in a message: invalid UTF-8 replaced, capped at `max_chars`.
pub fn bytes_excerpt(bytes: &[u8], max_chars: usize) -> String {
    let cut = &bytes[..bytes.len().min(max_chars * 4)];
    excerpt(&String::from_utf8_lossy(cut), max_chars)
}
