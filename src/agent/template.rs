//! The agent's template syntax: literal text with `{{ name }}` placeholders (spaces optional).
//! One parser, used both to check a config and to render a file, so the two never disagree.

/// A piece of a template, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text copied as is.
    Text(&'a str),
    /// A placeholder: the trimmed secret name between `{{` and `}}`.
    Secret(&'a str),
}

/// The pieces of `template`. An unclosed `{{` is text.
pub fn pieces(template: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = template;
    let mut pending: Option<&str> = None;
    std::iter::from_fn(move || {
        if let Some(name) = pending.take() {
            return Some(Piece::Secret(name));
        }
        if rest.is_empty() {
            return None;
        }
        let open = rest.find("{{");
        let close = open.and_then(|start| rest[start..].find("}}").map(|len| (start, start + len)));
        match close {
            Some((start, end)) => {
                let (text, name) = (&rest[..start], rest[start + 2..end].trim());
                rest = &rest[end + 2..];
                if text.is_empty() {
                    Some(Piece::Secret(name))
                } else {
                    pending = Some(name);
                    Some(Piece::Text(text))
                }
            }
            None => Some(Piece::Text(std::mem::take(&mut rest))),
        }
    })
}

/// The secrets a template's placeholders name, in order.
pub fn placeholders(template: &str) -> Vec<String> {
    pieces(template)
        .filter_map(|p| match p {
            Piece::Secret(name) => Some(name.to_string()),
            Piece::Text(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_placeholders_alternate_in_order() {
        use Piece::*;
        assert_eq!(
            pieces("a={{ acme/x }}{{acme/y}} tail {{ open").collect::<Vec<_>>(),
            [Text("a="), Secret("acme/x"), Secret("acme/y"), Text(" tail {{ open")]
        );
        assert_eq!(pieces("").count(), 0);
        assert_eq!(placeholders("a={{ acme/x }} b={{acme/y}}"), ["acme/x", "acme/y"]);
        assert!(placeholders("no placeholder }} {{").is_empty());
    }
}
