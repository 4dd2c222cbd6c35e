//! An Argo Workflow's node status, wherever Argo keeps it. A workflow grown past
//! `MAX_WORKFLOW_SIZE` (1 MiB by default) carries its nodes as `status.compressedNodes`: base64 of
//! gzip, zstd or brotli of the nodes' JSON (argo-workflows `workflow/packer/packer.go`
//! `compressWorkflow`, `util/file/fileutil.go` `CompressEncodeString`/`DecompressContent`, which
//! tells the algorithms apart by their magic bytes). One too large even so, or a controller told
//! to always offload, keeps them in its database: `status.nodes` empty and
//! `status.offloadNodeStatusVersion` set (`workflow/hydrator/hydrator.go`). The Argo Server
//! resumes, stops and sets nodes on such workflows the same way — hydrate, change, dehydrate,
//! update — so an approval may arrive as a new compressed string, or as nothing but a new
//! offload version.
//!
//! Decoding is bounded: at most [`MAX_DECOMPRESSED`] bytes come out, and they pass the same shape
//! check as an AdmissionReview (`codec::shape`) before they are parsed.

use super::codec;
use base64::Engine;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::io::Read;

/// The most bytes a `compressedNodes` may decompress to: four times what Argo lets a workflow
/// grow to before compressing it (`MAX_WORKFLOW_SIZE`, 1 MiB by default) — the nodes of a larger
/// one are offloaded, not compressed.
pub const MAX_DECOMPRESSED: u64 = 4 * 1024 * 1024;

/// A workflow's nodes, as far as the object shows them.
#[derive(Debug, Clone, PartialEq)]
pub enum Nodes<'a> {
    /// In the object (inline or compressed): node id → node.
    Here(Cow<'a, Map<String, Value>>),
    /// In Argo's database; the version names them.
    Offloaded(&'a str),
    /// Compressed in a way scimgate cannot read, and why.
    Unreadable(String),
}

impl Nodes<'_> {
    /// The nodes when they are here; none otherwise.
    pub fn map(&self) -> Option<&Map<String, Value>> {
        match self {
            Nodes::Here(m) => Some(m),
            _ => None,
        }
    }
}

/// The nodes of `obj` (a Workflow).
pub fn of(obj: &Value) -> Nodes<'_> {
    let status = obj.get("status");
    let field = |k: &str| status.and_then(|s| s.get(k));
    if let Some(m) = field("nodes").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        return Nodes::Here(Cow::Borrowed(m));
    }
    if let Some(c) = field("compressedNodes")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        return match decompress(c) {
            Ok(m) => Nodes::Here(Cow::Owned(m)),
            Err(why) => Nodes::Unreadable(why),
        };
    }
    if let Some(v) = field("offloadNodeStatusVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        return Nodes::Offloaded(v);
    }
    Nodes::Here(Cow::Owned(Map::new()))
}

fn decompress(text: &str) -> Result<Map<String, Value>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "status.compressedNodes is not base64".to_string())?;
    let mut out = Vec::new();
    let limited = |r: &mut dyn Read, out: &mut Vec<u8>| -> Result<(), String> {
        r.take(MAX_DECOMPRESSED + 1)
            .read_to_end(out)
            .map_err(|e| format!("status.compressedNodes does not decompress: {e}"))?;
        if out.len() as u64 > MAX_DECOMPRESSED {
            return Err(format!(
                "status.compressedNodes decompresses to more than {MAX_DECOMPRESSED} bytes"
            ));
        }
        Ok(())
    };
    match bytes.as_slice() {
        [0x1f, 0x8b, ..] => limited(&mut flate2::read::MultiGzDecoder::new(bytes.as_slice()), &mut out)?,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let mut d = ruzstd::decoding::StreamingDecoder::new(bytes.as_slice())
                .map_err(|e| format!("status.compressedNodes is not zstd: {e}"))?;
            limited(&mut d, &mut out)?;
        }
        // Argo takes anything else for brotli.
        _ => limited(
            &mut brotli_decompressor::Decompressor::new(bytes.as_slice(), 4096),
            &mut out,
        )?,
    }
    codec::shape(&out).map_err(|e| format!("status.compressedNodes: {e}"))?;
    match serde_json::from_slice::<Value>(&out) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("status.compressedNodes does not hold a map of nodes".into()),
        Err(e) => Err(format!("status.compressedNodes does not hold JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn gzip(v: &Value) -> String {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(v.to_string().as_bytes()).expect("gzip");
        base64::engine::general_purpose::STANDARD.encode(e.finish().expect("gzip"))
    }

    #[test]
    fn nodes_are_read_inline_compressed_or_known_offloaded() {
        let nodes = json!({"n1": {"type": "Suspend", "phase": "Running"}});
        let inline = json!({"status": {"nodes": nodes}});
        assert_eq!(of(&inline).map(), nodes.as_object());
        let packed = json!({"status": {"compressedNodes": gzip(&nodes)}});
        assert_eq!(of(&packed).map(), nodes.as_object());
        let zstd = ruzstd::encoding::compress_to_vec(
            nodes.to_string().as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let packed = json!({"status": {"compressedNodes": base64::engine::general_purpose::STANDARD.encode(zstd)}});
        assert_eq!(
            of(&packed).map(),
            nodes.as_object(),
            "zstd (WORKFLOW_COMPRESSION_ALGORITHM=zstd)"
        );
        // Anything else is brotli to Argo; what is not brotli either cannot be read.
        let junk = base64::engine::general_purpose::STANDARD.encode(b"not compressed at all");
        assert!(matches!(
            of(&json!({"status": {"compressedNodes": junk}})),
            Nodes::Unreadable(_)
        ));
        let offloaded = json!({"status": {"nodes": {}, "offloadNodeStatusVersion": "fnv:123"}});
        assert_eq!(of(&offloaded), Nodes::Offloaded("fnv:123"));
        assert!(matches!(
            of(&json!({"status": {"compressedNodes": "!!"}})),
            Nodes::Unreadable(_)
        ));
        assert_eq!(of(&json!({})).map(), Some(&Map::new()));
    }

    #[test]
    fn a_decompression_bomb_is_refused_not_inflated() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 64 * 1024 * 1024];
        e.write_all(b"{\"a\":\"").expect("gzip");
        e.write_all(&zeros).expect("gzip");
        let bomb = base64::engine::general_purpose::STANDARD.encode(e.finish().expect("gzip"));
        assert!(bomb.len() < 200 * 1024, "{}", bomb.len());
        match of(&json!({"status": {"compressedNodes": bomb}})) {
            Nodes::Unreadable(why) => assert!(why.contains("more than"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
