//! `WWW-Authenticate` as the client reads it (`challenge::parse`), and the token scopes in a
//! challenge (`Scope::parse`, `parse_scopes`). Never panics or loops; challenges that parse,
//! written back out with every value quoted, parse to the same challenges; a scope that parses
//! prints in a form that parses back to it.
#![no_main]

use berth_client::challenge::{self, Challenge, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(challenges) = challenge::parse(s) {
        for c in &challenges {
            let _ = c.scopes();
            let _ = (c.realm(), c.service(), c.error());
        }
        if let Some(text) = render(&challenges) {
            assert_eq!(
                challenge::parse(&text).as_ref(),
                Ok(&challenges),
                "{text:?}"
            );
        }
    }
    if let Ok(scope) = Scope::parse(s) {
        assert_eq!(Scope::parse(&scope.to_string()).as_ref(), Ok(&scope));
    }
    if let Ok(scopes) = challenge::parse_scopes(s) {
        let joined: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        assert_eq!(challenge::parse_scopes(&joined.join(" ")), Ok(scopes));
    }
});

/// The header that says `challenges` with quoted values; `None` where the grammar has no such
/// spelling (a `token68` without `=` padding reads as one only at the end of the header).
fn render(challenges: &[Challenge]) -> Option<String> {
    let mut out = Vec::new();
    for (i, c) in challenges.iter().enumerate() {
        let mut text = c.scheme.to_string();
        if let Some(t) = &c.token68 {
            let last = i + 1 == challenges.len() && c.params.is_empty();
            if !t.ends_with('=') && !last {
                return None;
            }
            text.push(' ');
            text.push_str(t);
            if !c.params.is_empty() {
                text.push(',');
            }
        }
        let params: Vec<String> = c
            .params
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        if !params.is_empty() {
            text.push(' ');
            text.push_str(&params.join(", "));
        }
        out.push(text);
    }
    Some(out.join(", "))
}
