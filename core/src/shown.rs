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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(excerpt("", 5), "");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("日本語", 3), "日本語");
    }

    #[test]
    fn long_text_is_cut_on_a_character_with_an_ellipsis() {
        assert_eq!(excerpt("abcdef", 4), "abc…");
        assert_eq!(excerpt("ééééé", 3), "éé…");
        assert_eq!(excerpt("🙂🙂🙂🙂", 2), "🙂…");
        assert_eq!(excerpt("abc", 1), "…");
        assert_eq!(excerpt("abc", 0), "");
        let long = "x".repeat(10_000);
        assert_eq!(excerpt(&long, 64).chars().count(), 64);
    }

    #[test]
    fn control_characters_are_escaped_and_never_cut_in_half() {
        assert_eq!(excerpt("a\nb\tc", 20), "a\\nb\\tc");
        assert_eq!(excerpt("a\u{1b}[31m", 20), "a\\u{1b}[31m");
        // "a" + "\u{1b}" (6 characters) does not fit in 5 with the ellipsis: the escape goes.
        assert_eq!(excerpt("a\u{1b}bcdef", 5), "a…");
        assert_eq!(excerpt("ab\ncdef", 4), "ab…");
        assert_eq!(excerpt("ab\\cdef", 4), "ab\\…");
        let all = "x\\u{7f}y\\u{1b}z\\n";
        assert_eq!(excerpt("x\u{7f}y\u{1b}z\n", 100), all);
        for n in 0..all.len() {
            let e = excerpt("x\u{7f}y\u{1b}z\n", n);
            assert!(e.chars().count() <= n, "{n}: {e}");
            // Whatever is kept is a prefix of the escaped text that ends between two pieces.
            let kept = e.trim_end_matches('…');
            assert!(all.starts_with(kept), "{n}: {e}");
            assert!(
                [
                    "",
                    "x",
                    "x\\u{7f}",
                    "x\\u{7f}y",
                    "x\\u{7f}y\\u{1b}",
                    "x\\u{7f}y\\u{1b}z"
                ]
                .contains(&kept),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn name_lists_are_capped_in_count_length_and_bytes() {
        let (shown, more) = name_list(["a", "b", "c"], 64, 20, 1024);
        assert_eq!((shown, more), (vec!["a".into(), "b".into(), "c".into()], 0));

        let many: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
        let (shown, more) = name_list(&many, 64, 20, 1024);
        assert_eq!((shown.len(), more), (20, 10));
        assert_eq!(shown[19], "c19");

        let long = vec!["y".repeat(500); 3];
        let (shown, more) = name_list(&long, 64, 20, 1024);
        assert_eq!(shown[0], format!("{}…", "y".repeat(63)));
        assert_eq!((shown.len(), more), (3, 0));

        // 64 four-byte characters are 256 bytes: the byte budget stops the list first.
        let wide = vec!["🙂".repeat(100); 20];
        let (shown, more) = name_list(&wide, 64, 20, 800);
        assert_eq!((shown.len(), more), (3, 17));
        assert!(shown.join(", ").len() <= 800);
    }
}
