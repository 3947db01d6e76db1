//! Reader for the IDX format of MNIST-style datasets (LeCun et al., "The MNIST database").
//!
//! An IDX file is a big-endian header — two zero bytes, a type code, the number of dimensions,
//! then one `u32` per dimension — followed by the values. MNIST images are `u8` with dims
//! `[n, 28, 28]`, labels `u8` with dims `[n]`. Files may be gzipped (detected by their magic
//! bytes, not their name). Every inconsistency — wrong magic, unsupported type, a size that does
//! not match the header, trailing bytes, a broken gzip stream — is an [`IdxError`], never a panic
//! or silently wrong data.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// Type code of unsigned bytes, the only element type MNIST and Fashion-MNIST use.
const TYPE_U8: u8 = 0x08;
/// Largest number of dimensions accepted (MNIST uses 1 for labels and 3 for images).
const MAX_DIMS: usize = 4;

/// An n-dimensional array of `u8` read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions from the header, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// What can go wrong while reading an IDX file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be opened or read.
    #[error("cannot read IDX file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The header is not an IDX header of unsigned bytes.
    #[error(
        "{path} is not an IDX file of unsigned bytes ({why}); re-download it or check the path"
    )]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with the header.
        why: String,
    },
    /// The data is shorter or longer than the header says.
    #[error(
        "{path} is corrupt: the header promises {expected} bytes of data but the file holds {found}; re-download it"
    )]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises.
        expected: usize,
        /// Bytes actually present (or at least this many, when longer).
        found: usize,
    },
    /// A label is outside the dataset's classes.
    #[error(
        "{path} holds label {label}, outside the {classes} classes of this dataset; check that it is this dataset's labels file"
    )]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The label found.
        label: u8,
        /// Number of classes.
        classes: usize,
    },
    /// The array has other dimensions than the caller needs.
    #[error("{path} has dimensions {found:?} but {expected} was expected")]
    UnexpectedShape {
        /// The file.
        path: PathBuf,
        /// Dimensions read from the header.
        found: Vec<usize>,
        /// What the caller expected, in words.
        expected: String,
    },
}

/// Reads an IDX file of `u8` values, gzipped or raw.
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    let io = |source| IdxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut head = [0u8; 2];
    let n = read_full(&mut file, &mut head).map_err(io)?;
    let prefix = &head[..n];
    let gzipped = prefix == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gzipped {
        Box::new(MultiGzDecoder::new(prefix.chain(file)))
    } else {
        Box::new(prefix.chain(file))
    };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|source| {
        if gzipped {
            IdxError::BadHeader {
                path: path.to_path_buf(),
                why: format!("broken gzip stream: {source}"),
            }
        } else {
            io(source)
        }
    })?;
    parse_idx(&bytes, path)
}

/// Parses the bytes of an (already decompressed) IDX file; `path` only names it in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, IdxError> {
    let bad = |why: String| IdxError::BadHeader {
        path: path.to_path_buf(),
        why,
    };
    if bytes.len() < 4 {
        return Err(bad(format!(
            "only {} bytes, shorter than a header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "magic number starts with {:#04x} {:#04x}, not 0x00 0x00",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != TYPE_U8 {
        return Err(bad(format!(
            "element type code {:#04x}, only 0x08 (unsigned byte) is supported",
            bytes[2]
        )));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 || ndims > MAX_DIMS {
        return Err(bad(format!("{ndims} dimensions, expected 1 to {MAX_DIMS}")));
    }
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(bad(format!(
            "header of {ndims} dimensions needs {header_len} bytes, file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let found = bytes.len() - header_len;
    if found != expected {
        return Err(IdxError::SizeMismatch {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Encodes an array as IDX bytes (uncompressed); the inverse of [`parse_idx`].
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * array.dims.len() + array.data.len());
    out.extend_from_slice(&[0, 0, TYPE_U8, array.dims.len() as u8]);
    for &d in &array.dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn sample() -> IdxArray {
        IdxArray {
            dims: vec![3, 2, 2],
            data: (0..12).collect(),
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8], gzip: bool) -> PathBuf {
        let path = dir.join(name);
        let mut file = File::create(&path).unwrap();
        if gzip {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(bytes).unwrap();
            file.write_all(&enc.finish().unwrap()).unwrap();
        } else {
            file.write_all(bytes).unwrap();
        }
        path
    }

    #[test]
    fn round_trips_raw_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_idx(&sample());
        for gzip in [false, true] {
            let path = write(dir.path(), &format!("a{gzip}"), &bytes, gzip);
            assert_eq!(read_idx(&path).unwrap(), sample());
        }
    }

    #[test]
    fn truncated_data_is_a_size_error() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_idx(&sample());
        let path = write(dir.path(), "t", &bytes[..bytes.len() - 3], true);
        match read_idx(&path) {
            Err(IdxError::SizeMismatch {
                expected, found, ..
            }) => assert_eq!((expected, found), (12, 9)),
            other => panic!("expected a size mismatch, got {other:?}"),
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode_idx(&sample());
        bytes.push(7);
        assert!(matches!(
            parse_idx(&bytes, Path::new("x")),
            Err(IdxError::SizeMismatch { found: 13, .. })
        ));
    }

    #[test]
    fn bad_magic_and_type_are_rejected() {
        let mut bytes = encode_idx(&sample());
        bytes[0] = 1;
        let err = parse_idx(&bytes, Path::new("x")).unwrap_err().to_string();
        assert!(err.contains("magic number"), "{err}");
        let mut bytes = encode_idx(&sample());
        bytes[2] = 0x0d; // float
        let err = parse_idx(&bytes, Path::new("x")).unwrap_err().to_string();
        assert!(err.contains("element type"), "{err}");
        let err = parse_idx(&[0, 0, 8], Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than a header"), "{err}");
        let err = parse_idx(&[0, 0, 8, 3, 0, 0], Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("header of 3 dimensions"), "{err}");
    }

    #[test]
    fn broken_gzip_stream_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "g", &encode_idx(&sample()), true);
        let mut gz = std::fs::read(&path).unwrap();
        let len = gz.len();
        gz.truncate(len - 10);
        std::fs::write(&path, gz).unwrap();
        let err = read_idx(&path).unwrap_err().to_string();
        assert!(err.contains("gzip"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_idx(Path::new("/nonexistent/train-images-idx3-ubyte.gz"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/train-images"), "{err}");
    }
}
