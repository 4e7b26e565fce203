//! The house flows one way: every top-level module of `src/` sits in one
//! layer of `mezzanine::LAYERS`, and imports only from layers below it.
//! The check reads the `crate::…` paths of each file (`use` lines, grouped
//! `crate::{a, b}` imports and inline paths alike); comment lines are skipped.

use std::collections::BTreeSet;
use std::path::Path;

use mezzanine::LAYERS;

/// The layer index of a top-level module, if it is placed.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules named by `crate::…` paths in `source`.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        // `$crate::` (macros) and `foo_crate::` are not this crate's paths.
        if at > 0 && (bytes[at - 1] == b'$' || is_ident(bytes[at - 1])) {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first identifier of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        out.insert(ident_at(&group[j..]));
                        item_start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => item_start = false,
                }
            }
        } else {
            out.insert(ident_at(rest));
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `module imports other` lines for every import that goes sideways or up.
fn violations(src: &Path) -> (Vec<String>, BTreeSet<String>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(src).ok()?;
            let first = rel.components().next()?.as_os_str().to_str()?;
            Some(first.trim_end_matches(".rs").to_string())
        })
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut bad = Vec::new();
    let mut unplaced = BTreeSet::new();
    for p in &files {
        let rel = p.strip_prefix(src).expect("under src");
        let me = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a name")
            .trim_end_matches(".rs")
            .to_string();
        if me == "lib" || me == "main" {
            continue;
        }
        let Some(my_layer) = layer_of(&me) else {
            unplaced.insert(me);
            continue;
        };
        let text = std::fs::read_to_string(p).expect("readable source");
        for other in crate_imports(&text) {
            if other == me || !modules.contains(&other) {
                continue;
            }
            match layer_of(&other) {
                Some(l) if l < my_layer => {}
                Some(l) => bad.push(format!(
                    "{}: `{me}` (layer {my_layer}) imports `{other}` (layer {l}), which is not below it",
                    rel.display()
                )),
                None => {
                    unplaced.insert(other);
                }
            }
        }
    }
    (bad, unplaced)
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let (bad, unplaced) = violations(&crate::repo("src"));
    assert!(
        unplaced.is_empty(),
        "modules not placed in mezzanine::LAYERS (add them where the data flow puts them): {unplaced:?}"
    );
    assert!(
        bad.is_empty(),
        "imports against the data flow:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_grouped_inline_and_use_paths_and_skips_comments() {
    let src = "use crate::ingest::Sample;\n\
               use crate::{history::History, mes::{Envelope, sync}};\n\
               // crate::ui is only mentioned here\n\
               fn f() { let _ = crate::render::X; macro_rules! m { () => { $crate::app::Y } } }\n";
    let found: Vec<String> = crate_imports(src).into_iter().collect();
    assert_eq!(found, ["history", "ingest", "mes", "render"]);
}

#[test]
fn a_circle_like_the_old_history_mes_one_fails_the_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    for (file, text) in [
        ("lib.rs", "pub mod history;\npub mod mes;\n"),
        ("mes/mod.rs", "use crate::history::{History, WriterMsg};\n"),
        (
            "history/writer.rs",
            "use crate::mes::{Envelope, sync::SeenEvents};\n",
        ),
    ] {
        let p = src.join(file);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    let (bad, unplaced) = violations(src);
    assert!(unplaced.is_empty(), "{unplaced:?}");
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("history/writer.rs: `history`") && bad[0].contains("imports `mes`"),
        "{bad:?}"
    );
}
