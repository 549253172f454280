//! What a file holds, from its secrets' values. Never prints a value: errors name the secret.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::config::FileConfig;
use super::config::Format;
use super::template;
use super::template::Piece;

/// The env name of `secret`: configured, else its last segment in capitals (`-` and `.` as `_`).
pub fn env_name(f: &FileConfig, secret: &str) -> String {
    f.env_names.get(secret).cloned().unwrap_or_else(|| {
        secret
            .rsplit('/')
            .next()
            .unwrap_or(secret)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    })
}

/// The bytes of `f` given each secret's value.
pub fn render(f: &FileConfig, values: &BTreeMap<String, Zeroizing<Vec<u8>>>) -> Result<Zeroizing<Vec<u8>>, String> {
    let value = |name: &str| values.get(name).ok_or_else(|| format!("{name} has no value"));
    let text = |name: &str| -> Result<&str, String> {
        std::str::from_utf8(value(name)?).map_err(|_| format!("{name} is not UTF-8, which a {:?} file needs", f.format))
    };
    let mut out = Zeroizing::new(Vec::new());
    match f.format {
        Format::Raw => out.extend_from_slice(value(&f.secrets[0])?),
        Format::Env => {
            for s in &f.secrets {
                let v = text(s)?;
                if v.contains(['\n', '\r', '\0']) {
                    return Err(format!("{s} holds a line break or NUL, which an env file cannot"));
                }
                out.extend_from_slice(format!("{}=", env_name(f, s)).as_bytes());
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            }
        }
        Format::Json => {
            let mut m = serde_json::Map::new();
            for s in &f.secrets {
                m.insert(s.clone(), serde_json::Value::String(text(s)?.to_string()));
            }
            let body = Zeroizing::new(serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?);
            out.extend_from_slice(&body);
            out.push(b'\n');
            // `m` holds copies of the values; the allocator zeroes them as they are freed.
        }
        Format::Template => {
            for piece in template::pieces(f.template.as_deref().unwrap_or("")) {
                match piece {
                    Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                    Piece::Secret(name) => out.extend_from_slice(value(name)?),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(format: &str, extra: &str) -> FileConfig {
        toml::from_str(&format!("path = \"/run/x\"\nformat = \"{format}\"\n{extra}")).unwrap()
    }

    fn values() -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        BTreeMap::from([
            ("acme/app/db-password".to_string(), Zeroizing::new(b"fake-pw".to_vec())),
            ("acme/app/api.key".to_string(), Zeroizing::new(b"fake-key".to_vec())),
        ])
    }

    #[test]
    fn each_format_renders_its_secrets() {
        let two = "secrets = [\"acme/app/db-password\", \"acme/app/api.key\"]";
        let env = render(&file("env", two), &values()).unwrap();
        assert_eq!(&*env, b"DB_PASSWORD=fake-pw\nAPI_KEY=fake-key\n");
        let json: serde_json::Value = serde_json::from_slice(&render(&file("json", two), &values()).unwrap()).unwrap();
        assert_eq!(json["acme/app/api.key"], "fake-key");
        let t = file(
            "template",
            "template = \"postgres://app:{{ acme/app/db-password }}@db/app\"\nsecrets = [\"acme/app/db-password\"]",
        );
        assert_eq!(&*render(&t, &values()).unwrap(), b"postgres://app:fake-pw@db/app");
        let raw = file("raw", "secrets = [\"acme/app/api.key\"]");
        assert_eq!(&*render(&raw, &values()).unwrap(), b"fake-key");
        let mut bad = values();
        bad.insert("acme/app/db-password".into(), Zeroizing::new(b"fake\nline".to_vec()));
        let e = render(&file("env", two), &bad).unwrap_err();
        assert!(e.contains("line break") && !e.contains("fake"), "{e}");
    }
}
