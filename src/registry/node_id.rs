//! OPC UA node ids as the registry writes them: text in, a checked
//! [`RegistryNodeId`] out. The namespace is an index (`ns=2;s=…`, which a
//! server may renumber after an upgrade) or its URI (`nsu=urn:…;s=…`,
//! stable; the adapter looks the index up in the server's NamespaceArray at
//! every connect). Identifiers: `s=` text, `i=` number, `g=` GUID, `b=`
//! base64 bytes; without a namespace part the node is in namespace 0.

/// Where a node's namespace is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    Index(u16),
    Uri(String),
}

/// A registry node id, checked for form (not for existence on a server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryNodeId {
    pub namespace: Namespace,
    /// `s=…`, `i=…`, `g=…` or `b=…`, as written.
    pub identifier: String,
}

impl RegistryNodeId {
    /// Parses `ns=<index>;<id>`, `nsu=<uri>;<id>` or `<id>`; the error says
    /// what is wrong, for people.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (namespace, identifier) = if let Some(rest) = text.strip_prefix("nsu=") {
            // A URI may itself hold ';' only escaped (%3B), so the first
            // ';' ends it.
            let (uri, id) = rest
                .split_once(';')
                .ok_or("`nsu=<namespace URI>;` must be followed by an identifier")?;
            if uri.trim().is_empty() {
                return Err("the namespace URI after `nsu=` is empty".into());
            }
            (Namespace::Uri(uri.to_string()), id)
        } else if let Some(rest) = text.strip_prefix("ns=") {
            let (index, id) = rest
                .split_once(';')
                .ok_or("`ns=<index>;` must be followed by an identifier")?;
            let index = index
                .parse::<u16>()
                .map_err(|_| format!("namespace index `{index}` is not a number 0–65535"))?;
            (Namespace::Index(index), id)
        } else {
            (Namespace::Index(0), text)
        };
        let (kind, value) = identifier
            .split_once('=')
            .ok_or("the identifier must be `s=…`, `i=…`, `g=…` or `b=…`")?;
        let valid = match kind {
            "s" => !value.is_empty(),
            "i" => value.parse::<u32>().is_ok(),
            "g" => {
                let groups: Vec<&str> = value.split('-').collect();
                groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
                    && groups
                        .iter()
                        .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
            }
            "b" => {
                !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
            }
            other => {
                return Err(format!(
                    "identifier type `{other}=` is not one of s= (text), i= (number), g= (GUID), b= (bytes)"
                ));
            }
        };
        if !valid {
            let what = match kind {
                "s" => "a non-empty text",
                "i" => "a whole number 0–4294967295",
                "g" => "a GUID like 09087e75-8e5e-499b-954f-f2a9603db28a",
                _ => "base64 bytes",
            };
            return Err(format!("`{kind}={value}` must be {what}"));
        }
        Ok(Self {
            namespace,
            identifier: identifier.to_string(),
        })
    }

    /// The `ns=<index>;…` form once the namespace's index is known.
    pub fn with_index(&self, index: u16) -> String {
        format!("ns={index};{}", self.identifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let n = RegistryNodeId::parse("nsu=urn:acme:plc;s=Line1.Mill01.Speed").expect("nsu");
        assert_eq!(n.namespace, Namespace::Uri("urn:acme:plc".into()));
        assert_eq!(n.with_index(4), "ns=4;s=Line1.Mill01.Speed");
        assert_eq!(
            RegistryNodeId::parse("ns=2;i=1001").map(|n| n.namespace),
            Ok(Namespace::Index(2))
        );
        assert!(RegistryNodeId::parse("i=2258").is_ok());
        assert!(RegistryNodeId::parse("ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a").is_ok());
        assert!(RegistryNodeId::parse("ns=1;b=M/RbKBsRVkePCePcx24oRA==").is_ok());
        for bad in [
            "ns=x;s=a",
            "ns=2;i=abc",
            "ns=2;g=1234",
            "nsu=;s=a",
            "nsu=urn:x",
            "ns=2;q=1",
            "Line1.Mill01",
        ] {
            assert!(RegistryNodeId::parse(bad).is_err(), "{bad}");
        }
    }
}
