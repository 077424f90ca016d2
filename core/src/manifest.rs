//! Manifest parsing and validation: OCI image manifests and indexes, Docker
//! schema2 manifests and manifest lists, and artifacts built on them.
//!
//! The registry stores manifest bytes exactly as pushed; this module only reads
//! them to validate, to find what they reference (for blob checks, referrers
//! and GC) and to tell their media type.

use serde_json::{Map, Value};

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest accepted, as most registries and clients agree.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A reference from a manifest to other content.
#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Present on layers stored elsewhere (non-distributable/foreign layers).
    pub has_urls: bool,
}

/// What the registry needs to know about a manifest.
#[derive(Debug)]
pub struct Manifest {
    pub media_type: String,
    /// Blobs it references: config, layers, artifact blobs.
    pub blobs: Vec<Descriptor>,
    /// Manifests it references (index and list entries).
    pub children: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub config_media_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

impl Manifest {
    /// The artifact type a referrers listing reports: `artifactType`, else the
    /// config's media type for image manifests.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref().or(self.config_media_type.as_deref())
    }

    /// Whether a blob may be missing from the registry: layers declared
    /// non-distributable, or carrying external URLs.
    pub fn blob_may_be_foreign(descriptor: &Descriptor) -> bool {
        descriptor.has_urls
            || descriptor.media_type.contains("nondistributable")
            || descriptor.media_type.contains(".foreign.")
    }
}

/// Parses and validates manifest bytes pushed with `content_type`.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(object) = value else {
        return Err("a manifest is a JSON object".into());
    };

    let declared = match object.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err("mediaType must be a string".into()),
    };
    let content_type = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .filter(|ct| !ct.is_empty());
    if let (Some(declared), Some(ct)) = (declared, content_type) {
        // Parameters aside on both sides, as the Content-Type's are.
        if declared.split(';').next().unwrap_or("").trim() != ct {
            return Err(format!("mediaType {declared} does not match Content-Type {ct}"));
        }
    }
    let media_type = declared
        .map(str::to_string)
        .unwrap_or_else(|| infer_media_type(&object, content_type));

    match object.get("schemaVersion") {
        Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
        Some(_) => return Err("schemaVersion must be 2".into()),
        None if media_type == OCI_MANIFEST
            || media_type == OCI_INDEX
            || media_type == DOCKER_MANIFEST
            || media_type == DOCKER_LIST =>
        {
            return Err("schemaVersion is required".into())
        }
        None => {}
    }

    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    let is_image = media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let mut config_media_type = None;

    if let Some(config) = object.get("config") {
        let config = descriptor(config, "config")?;
        config_media_type = Some(config.media_type.clone());
        blobs.push(config);
    } else if is_image {
        return Err("config is required".into());
    }
    match object.get("layers") {
        Some(Value::Array(layers)) => {
            for (i, layer) in layers.iter().enumerate() {
                blobs.push(descriptor(layer, &format!("layers[{i}]"))?);
            }
        }
        Some(_) => return Err("layers must be an array".into()),
        None if is_image => return Err("layers is required".into()),
        None => {}
    }
    if let Some(Value::Array(extra)) = object.get("blobs") {
        for (i, blob) in extra.iter().enumerate() {
            blobs.push(descriptor(blob, &format!("blobs[{i}]"))?);
        }
    }
    match object.get("manifests") {
        Some(Value::Array(entries)) => {
            for (i, entry) in entries.iter().enumerate() {
                children.push(descriptor(entry, &format!("manifests[{i}]"))?);
            }
        }
        Some(_) => return Err("manifests must be an array".into()),
        None if is_index => return Err("manifests is required".into()),
        None => {}
    }
    let subject = object.get("subject").map(|s| descriptor(s, "subject")).transpose()?;
    let artifact_type = match object.get("artifactType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("artifactType must be a string".into()),
    };
    let annotations = match object.get("annotations") {
        None => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err("annotations must be an object".into()),
    };
    Ok(Manifest {
        media_type,
        blobs,
        children,
        subject,
        artifact_type,
        config_media_type,
        annotations,
    })
}

/// Refuses a manifest whose media types are not RFC 6838 media types (the
/// image-spec requires it of `mediaType`, `artifactType` and descriptors).
/// The manifest's own type becomes the Content-Type of every read of it: a
/// control character there would make it unservable, so it is refused here,
/// at the push, rather than found at each read.
pub fn check_media_types(manifest: &Manifest) -> Result<(), String> {
    let check = |what: &str, value: &str| match is_media_type(value) {
        true => Ok(()),
        false => Err(format!("{what} {value:?} is not a valid media type")),
    };
    check("mediaType", &manifest.media_type)?;
    if let Some(artifact_type) = &manifest.artifact_type {
        check("artifactType", artifact_type)?;
    }
    let descriptors = manifest.blobs.iter().chain(&manifest.children).chain(&manifest.subject);
    for descriptor in descriptors {
        check("descriptor mediaType", &descriptor.media_type)?;
    }
    Ok(())
}

/// `type "/" subtype` of RFC 6838 section 4.2 (restricted names of 1 to 127
/// characters), optionally followed by `;` parameters of printable ASCII.
pub fn is_media_type(text: &str) -> bool {
    let (essence, parameters) = text.split_once(';').unwrap_or((text, ""));
    let restricted_name = |name: &str| {
        let mut bytes = name.bytes();
        name.len() <= 127
            && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let printable = |b: u8| b == b' ' || b.is_ascii_graphic();
    essence
        .split_once('/')
        .is_some_and(|(kind, subtype)| restricted_name(kind) && restricted_name(subtype))
        && parameters.bytes().all(printable)
}

/// What stored manifest bytes reference, whatever Content-Type they were
/// pushed with (it is not stored). A manifest whose kind only that
/// Content-Type told (no `mediaType`, `config`, `layers` or `manifests`)
/// does not [`parse`] without it; it was accepted under a type that is none
/// of the four pier knows, and any such type checks it the same way.
pub fn parse_stored(bytes: &[u8]) -> Result<Manifest, String> {
    parse(bytes, None).or_else(|_| parse(bytes, Some("application/octet-stream")))
}

/// The media type of stored manifest bytes, for the Content-Type of a GET.
/// A stored `mediaType` that is not a media type (pushed before pushes were
/// checked) is ignored: the type is then inferred from the content.
pub fn media_type_of(bytes: &[u8]) -> String {
    // Every manifest GET asks this: read the two fields that tell, not the
    // whole document. What the quick read refuses (a field given twice)
    // takes the full read, which decides as it always did; so does what is
    // not an object, which a struct would read as a list of its fields.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return media_type_read_fully(bytes);
    }
    match serde_json::from_slice::<Kind>(bytes) {
        Ok(Kind {
            media_type: Some(Value::String(s)),
            ..
        }) if is_media_type(&s) => s,
        Ok(kind) if kind.manifests.0 => OCI_INDEX.to_string(),
        Ok(_) => OCI_MANIFEST.to_string(),
        Err(_) => media_type_read_fully(bytes),
    }
}

fn media_type_read_fully(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => match object.get("mediaType") {
            Some(Value::String(s)) if is_media_type(s) => s.clone(),
            _ => infer_media_type(&object, None),
        },
        _ => OCI_MANIFEST.to_string(),
    }
}

/// The fields of a stored manifest that tell its media type (without a
/// Content-Type, `config` or `layers` mean what no `manifests` means).
#[derive(serde::Deserialize)]
struct Kind {
    #[serde(rename = "mediaType", default)]
    media_type: Option<Value>,
    #[serde(default)]
    manifests: Present,
}

/// Whether a field is there, whatever its value (`null` included).
#[derive(Default)]
struct Present(bool);

impl<'de> serde::Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Present, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(Present(true))
    }
}

fn infer_media_type(object: &Map<String, Value>, content_type: Option<&str>) -> String {
    if object.contains_key("manifests") {
        OCI_INDEX.to_string()
    } else if object.contains_key("config") || object.contains_key("layers") {
        OCI_MANIFEST.to_string()
    } else {
        content_type.unwrap_or(OCI_MANIFEST).to_string()
    }
}

fn descriptor(value: &Value, field: &str) -> Result<Descriptor, String> {
    let Value::Object(object) = value else {
        return Err(format!("{field} must be a descriptor object"));
    };
    let media_type = match object.get("mediaType") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(format!("{field}.mediaType is required")),
    };
    let digest = match object.get("digest") {
        Some(Value::String(s)) => Digest::parse(s).map_err(|_| format!("{field}.digest {s} is not a valid digest"))?,
        _ => return Err(format!("{field}.digest is required")),
    };
    let size = match object.get("size") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| format!("{field}.size must be a non-negative integer"))?,
        _ => return Err(format!("{field}.size is required")),
    };
    let has_urls = match object.get("urls") {
        None => false,
        Some(Value::Array(urls)) => !urls.is_empty(),
        Some(_) => return Err(format!("{field}.urls must be an array")),
    };
    if let Some(data) = object.get("data") {
        let Value::String(encoded) = data else {
            return Err(format!("{field}.data must be a base64 string"));
        };
        let decoded = base64_decode(encoded).ok_or_else(|| format!("{field}.data is not valid base64"))?;
        if decoded.len() as u64 != size || Digest::of(digest.algorithm(), &decoded) != digest {
            return Err(format!("{field}.data does not match its digest and size"));
        }
    }
    Ok(Descriptor {
        media_type,
        digest,
        size,
        has_urls,
    })
}

/// Standard base64 with padding, as the image-spec requires for `data`.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in quad.iter().take(4 - pad) {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let group = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend(group.iter().take(3 - pad));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn desc(media_type: &str, content: &[u8]) -> Value {
        serde_json::json!({"mediaType": media_type, "digest": Digest::of(Algorithm::Sha256, content).as_str(), "size": content.len()})
    }

    #[test]
    fn image_manifest_references_config_and_layers() {
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", b"{}"),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar", b"a")],
            "subject": desc(OCI_MANIFEST, b"s"), "artifactType": "x/y"});
        let parsed = parse(&serde_json::to_vec(&m).unwrap(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(parsed.blobs.len(), 2);
        assert!(parsed.subject.is_some());
        assert_eq!(parsed.referrer_artifact_type(), Some("x/y"));
    }

    #[test]
    fn index_references_children() {
        let m =
            serde_json::json!({"schemaVersion": 2, "manifests": [desc(OCI_MANIFEST, b"1"), desc(OCI_MANIFEST, b"2")]});
        let parsed = parse(&serde_json::to_vec(&m).unwrap(), Some(OCI_INDEX)).unwrap();
        assert_eq!(parsed.media_type, OCI_INDEX);
        assert_eq!(parsed.children.len(), 2);
    }

    #[test]
    fn refuses_invalid_manifests() {
        let cases = [
            (&b"{"[..], OCI_MANIFEST),
            (b"[]", OCI_MANIFEST),
            (br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#, OCI_MANIFEST),
            (br#"{"schemaVersion":1,"config":{},"layers":[]}"#, OCI_MANIFEST),
            (br#"{"schemaVersion":2,"layers":[]}"#, OCI_MANIFEST),
            (br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0","size":1},"layers":[]}"#, OCI_MANIFEST),
            (br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1},"layers":[]}"#, OCI_MANIFEST),
        ];
        for (bytes, ct) in cases {
            assert!(parse(bytes, Some(ct)).is_err(), "{}", String::from_utf8_lossy(bytes));
        }
    }

    /// Found by the `manifest` fuzz target (a `mediaType` of
    /// `"x;[sbom"`, accepted without a Content-Type and then refused under
    /// its own type); worse, a `mediaType` holding a line break was stored
    /// and every GET of it panicked building its Content-Type header.
    #[test]
    fn media_types_must_be_type_and_subtype() {
        for bad in ["a\nb/c", "x;[sbom", "text", "/json", "a/", "a b/c", "é/x"] {
            let m = serde_json::json!({"schemaVersion": 2, "mediaType": bad});
            let bytes = serde_json::to_vec(&m).unwrap();
            let pushed = parse(&bytes, None).and_then(|parsed| check_media_types(&parsed));
            assert!(pushed.is_err(), "{bad:?}");
        }
        for good in [
            "application/vnd.example.sbom+json",
            "application/vnd.cncf.helm.chart.v1.tar+gzip",
        ] {
            let m = serde_json::json!({"schemaVersion": 2, "mediaType": good});
            let parsed = parse(&serde_json::to_vec(&m).unwrap(), Some(good)).unwrap();
            assert_eq!(parsed.media_type, good);
        }
    }

    #[test]
    fn media_types_are_rfc_6838_names() {
        for ok in [
            OCI_MANIFEST,
            "application/vnd.example+json",
            "text/plain; charset=utf-8",
            "a/b",
        ] {
            assert!(is_media_type(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/b",
            "a/",
            "a/b/c",
            "a\nb/c",
            "a/b\r\nX-Evil: 1",
            "a/b; x=\u{7f}",
            "a b/c",
            "+a/b",
        ] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
        let evil = serde_json::json!({"schemaVersion": 2, "mediaType": "application/x\u{1}y", "config": desc("a/b", b"{}"), "layers": []});
        let bytes = serde_json::to_vec(&evil).unwrap();
        assert!(check_media_types(&parse(&bytes, None).unwrap()).is_err());
        assert_eq!(media_type_of(&bytes), OCI_MANIFEST);
    }

    #[test]
    fn media_type_of_reads_as_the_full_document_says() {
        let docs: &[&str] = &[
            r#"{"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}"#,
            r#"{"mediaType": "application/x.custom+json", "config": {}}"#,
            r#"{"manifests": []}"#,
            r#"{"manifests": null}"#,
            r#"{"config": {}, "layers": []}"#,
            r#"{"schemaVersion": 2}"#,
            r#"{"mediaType": 7, "manifests": []}"#,
            r#"{"mediaType": null}"#,
            r#"{"mediaType": "not a type", "manifests": [1]}"#,
            r#"{"media\u0054ype": "a/b"}"#,
            r#"{"mediaType": "a/b", "mediaType": "c/d"}"#,
            r#"{"manifests": [], "manifests": []}"#,
            r#"[1, 2]"#,
            r#" ["a/b", []]"#,
            r#""a/b""#,
            r#"{"mediaType": "a/b""#,
            "",
        ];
        for doc in docs {
            assert_eq!(
                media_type_of(doc.as_bytes()),
                media_type_read_fully(doc.as_bytes()),
                "{doc}"
            );
        }
        assert_eq!(media_type_of(docs[3].as_bytes()), OCI_INDEX);
        assert_eq!(media_type_of(docs[9].as_bytes()), "a/b");
        assert_eq!(
            media_type_of(docs[10].as_bytes()),
            "c/d",
            "the last one, as a full read keeps it"
        );
    }

    #[test]
    fn data_field_must_match() {
        let good = serde_json::json!({"mediaType": "a/b", "digest": Digest::of(Algorithm::Sha256, b"hi").as_str(), "size": 2, "data": "aGk="});
        assert!(descriptor(&good, "d").is_ok());
        let bad = serde_json::json!({"mediaType": "a/b", "digest": Digest::of(Algorithm::Sha256, b"hi").as_str(), "size": 2, "data": "aGo="});
        assert!(descriptor(&bad, "d").is_err());
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a=bc").is_none());
    }
}
