//! The guided tour (docs/packet-path.md) links source lines by number; this
//! keeps the links honest as the code moves: every link whose text is a
//! code name must point at a line that contains that name, and every linked
//! file and line must exist.

use std::path::Path;

/// (link text, target path relative to docs/, line) of every `[..](..#Lnn)`.
fn line_links(md: &str) -> Vec<(String, String, usize)> {
    let mut out = vec![];
    let mut rest = md;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find("](") else { break };
        let text = rest[..close].to_string();
        let after = &rest[close + 2..];
        let Some(end) = after.find(')') else { break };
        let target = &after[..end];
        if let Some((path, line)) = target.split_once("#L")
            && let Ok(n) = line.parse()
        {
            out.push((text, path.to_string(), n));
        }
        rest = after;
    }
    out
}

#[test]
fn packet_path_links_point_at_what_they_name() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let md = std::fs::read_to_string(docs.join("packet-path.md")).expect("docs/packet-path.md");
    let links = line_links(&md);
    assert!(links.len() > 30, "only {} line links found", links.len());
    let mut bad = vec![];
    for (text, path, n) in &links {
        let file = docs.join(path);
        let src = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{text}: {}: {e}", file.display()));
        let Some(line) = src.lines().nth(n - 1) else {
            bad.push(format!(
                "{text} -> {path}#L{n}: the file has {} lines",
                src.lines().count()
            ));
            continue;
        };
        // `LbState::add_backend` -> `add_backend`; plain prose links only
        // need the line to exist.
        if let Some(code) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
            let name = code.rsplit("::").next().unwrap_or(code);
            if !line.contains(name) {
                bad.push(format!(
                    "{text} -> {path}#L{n}: the line is `{}`",
                    line.trim()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "stale links in docs/packet-path.md (scripts/fix-doc-links.py re-points them):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_link_parser_finds_line_links() {
    let got = line_links("see [`f`](../a.rs#L3) and [here](b.rs#L10), not [x](c.rs)");
    assert_eq!(
        got,
        vec![
            ("`f`".to_string(), "../a.rs".to_string(), 3),
            ("here".to_string(), "b.rs".to_string(), 10)
        ]
    );
}
