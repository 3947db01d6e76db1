//! Text corpora for language models of every family (character RNNs, GPTs): locating and
//! reading a corpus, a character vocabulary, the 90/10 train/validation split, and the windows
//! of token ids a model trains on.
//!
//! A window is `seq_len + 1` consecutive characters: the model reads the first `seq_len` and
//! predicts each next one. Windows start every `seq_len` characters, so one pass over them
//! (an epoch) sees every character once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use strata_data::datasets::{DatasetSpec, Locator};

/// The file `config.json` names for the vocabulary of a character model.
pub const VOCAB_FILE: &str = "vocab.json";

/// Why a corpus, a vocabulary or a prompt cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The corpus is missing or unreadable.
    #[error("cannot read the corpus {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The corpus is not UTF-8.
    #[error(
        "the corpus {path} is not valid UTF-8 (first bad byte at offset {offset}); convert it to UTF-8 first"
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The corpus has too little text.
    #[error("the corpus {path} {why}")]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// What is short.
        why: String,
    },
    /// Characters the vocabulary does not have.
    #[error(
        "the {what} has characters the model never saw in training: {chars}; the model knows only the {size} characters of its {VOCAB_FILE}"
    )]
    UnknownChars {
        /// `prompt`, ...
        what: &'static str,
        /// The characters, quoted.
        chars: String,
        /// Size of the vocabulary.
        size: usize,
    },
    /// The vocabulary file is unusable.
    #[error("{0}")]
    Vocab(String),
    /// The dataset could not be found or downloaded.
    #[error(transparent)]
    Locate(#[from] strata_data::datasets::LocateError),
}

/// Tiny Shakespeare (karpathy/char-rnn), as the data dir holds it: `tiny-shakespeare/input.txt`.
pub fn tiny_shakespeare() -> DatasetSpec {
    DatasetSpec {
        name: "tiny-shakespeare",
        files: vec!["input.txt"],
        mirrors: vec![
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
                .into(),
        ],
        sha256: vec![(
            "input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        )],
    }
}

/// The corpus file of a run: `--corpus FILE` as given, else tiny Shakespeare under the data
/// dir (downloaded into the cache if no folder holds it).
pub fn locate_corpus(
    corpus: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<PathBuf, CorpusError> {
    match corpus {
        Some(path) => Ok(path.to_path_buf()),
        None => {
            let spec = tiny_shakespeare();
            Ok(Locator::from_env(data_dir)
                .find_or_download(&spec)?
                .join(spec.files[0]))
        }
    }
}

/// Reads a corpus: UTF-8 text, not empty.
pub fn read_corpus(path: &Path) -> Result<String, CorpusError> {
    let bytes = std::fs::read(path).map_err(|e| CorpusError::Read {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| CorpusError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    if text.is_empty() {
        return Err(CorpusError::TooSmall {
            path: path.to_path_buf(),
            why: "is empty".into(),
        });
    }
    Ok(text)
}

/// The characters of a corpus, each with its id (in code-point order, as char-rnn and nanoGPT
/// number them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharVocab {
    /// Character of each id.
    pub chars: Vec<char>,
}

impl CharVocab {
    /// Every distinct character of `text`.
    pub fn from_text(text: &str) -> Self {
        let set: BTreeSet<char> = text.chars().collect();
        Self {
            chars: set.into_iter().collect(),
        }
    }

    /// Characters in the vocabulary.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    fn id(&self, c: char) -> Option<u32> {
        self.chars.binary_search(&c).ok().map(|i| i as u32)
    }

    /// The ids of `text`; characters outside the vocabulary are an error that lists them
    /// (`what` names the text in it: `prompt`, ...).
    pub fn encode(&self, text: &str, what: &'static str) -> Result<Vec<u32>, CorpusError> {
        let mut unknown = BTreeSet::new();
        let ids: Vec<u32> = text
            .chars()
            .filter_map(|c| {
                let id = self.id(c);
                if id.is_none() {
                    unknown.insert(c);
                }
                id
            })
            .collect();
        if !unknown.is_empty() {
            return Err(CorpusError::UnknownChars {
                what,
                chars: unknown
                    .iter()
                    .map(|c| format!("{:?}", c))
                    .collect::<Vec<_>>()
                    .join(", "),
                size: self.len(),
            });
        }
        Ok(ids)
    }

    /// The text of `ids` (ids outside the vocabulary are skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter_map(|&i| self.chars.get(i as usize))
            .collect()
    }

    /// Writes `vocab.json` into `dir` (atomically).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        strata_data::fsutil::write_atomic(&dir.join(VOCAB_FILE), &json)
    }

    /// Reads `vocab.json` from a model dir.
    pub fn load(dir: &Path) -> Result<Self, CorpusError> {
        let path = dir.join(VOCAB_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CorpusError::Vocab(format!("cannot read {}: {e}", path.display())))?;
        let vocab: Self = serde_json::from_str(&text).map_err(|e| {
            CorpusError::Vocab(format!("{} is not a vocabulary: {e}", path.display()))
        })?;
        if vocab.is_empty() || vocab.chars.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CorpusError::Vocab(format!(
                "{}: the characters must be distinct and in code-point order",
                path.display()
            )));
        }
        Ok(vocab)
    }
}

/// A corpus as ids, split into training and validation text.
#[derive(Debug, Clone)]
pub struct EncodedCorpus {
    /// The vocabulary of the whole corpus.
    pub vocab: CharVocab,
    /// The first 90 % of the characters.
    pub train: Arc<Vec<u32>>,
    /// The last 10 %.
    pub valid: Arc<Vec<u32>>,
}

impl EncodedCorpus {
    /// Encodes `text` and splits it 90/10 by characters; each part must hold at least one
    /// window of `seq_len + 1` characters.
    pub fn split(text: &str, path: &Path, seq_len: usize) -> Result<Self, CorpusError> {
        let vocab = CharVocab::from_text(text);
        let ids = vocab.encode(text, "corpus")?;
        let (train, valid) = split_ids(&ids, path, seq_len, "characters", "--seq-len")?;
        Ok(Self {
            vocab,
            train,
            valid,
        })
    }
}

/// The token ids of a text, shared between data loaders without copying.
pub type TokenIds = Arc<Vec<u32>>;

/// Splits the ids of a corpus 90/10 into training and validation ids; each part must hold at
/// least one window of `window + 1` ids (`unit`: what an id is, `flag`: the option that sets
/// `window`, both for the error).
pub fn split_ids(
    ids: &[u32],
    path: &Path,
    window: usize,
    unit: &str,
    flag: &str,
) -> Result<(TokenIds, TokenIds), CorpusError> {
    let cut = ids.len() * 9 / 10;
    let (train, valid) = ids.split_at(cut);
    for (part, n) in [
        ("training part (90 %)", train.len()),
        ("validation part (10 %)", valid.len()),
    ] {
        if n < window + 1 {
            return Err(CorpusError::TooSmall {
                path: path.to_path_buf(),
                why: format!(
                    "is too short: its {part} has {n} {unit}, fewer than {flag} {window} + 1; use a longer corpus or a shorter {flag}"
                ),
            });
        }
    }
    Ok((Arc::new(train.to_vec()), Arc::new(valid.to_vec())))
}

/// `seq_len + 1` consecutive token ids.
pub type Window = Vec<u32>;

/// The windows of a token stream, one every `stride` tokens (`seq_len` by default: each token
/// once per pass).
#[derive(Debug, Clone)]
pub struct Windows {
    tokens: Arc<Vec<u32>>,
    seq_len: usize,
    stride: usize,
}

impl Windows {
    /// The windows of `tokens`, one every `seq_len` tokens.
    pub fn new(tokens: Arc<Vec<u32>>, seq_len: usize) -> Self {
        Self {
            tokens,
            seq_len,
            stride: seq_len,
        }
    }

    /// The windows of `tokens` starting at every `stride`-th token: with stride 1 and shuffling,
    /// each batch holds windows at random offsets of the text (as nanoGPT samples them).
    pub fn overlapping(tokens: Arc<Vec<u32>>, seq_len: usize, stride: usize) -> Self {
        Self {
            tokens,
            seq_len,
            stride: stride.max(1),
        }
    }
}

impl Dataset<Window> for Windows {
    fn get(&self, index: usize) -> Result<Window, DatasetError> {
        let start = index * self.stride;
        self.tokens
            .get(start..start + self.seq_len + 1)
            .map(<[u32]>::to_vec)
            .ok_or_else(|| {
                DatasetError::new(std::io::Error::other(format!(
                    "window {index} is out of range: the text has {} windows",
                    self.len()
                )))
            })
    }

    fn len(&self) -> usize {
        let last_start = self.tokens.len().saturating_sub(self.seq_len + 1);
        if self.tokens.len() < self.seq_len + 1 {
            0
        } else {
            last_start / self.stride + 1
        }
    }
}

/// A batch of windows: what the model reads and what it must predict, `[batch, seq_len]` each.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Ids read.
    pub inputs: Tensor<2, Int>,
    /// The next id at each position.
    pub targets: Tensor<2, Int>,
}

/// Stacks windows into a [`TokenBatch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowBatcher;

impl Batcher<Window, TokenBatch> for WindowBatcher {
    fn batch(&self, items: Vec<Window>, device: &Device) -> TokenBatch {
        let batch = items.len();
        let len = items.first().map_or(1, |w| w.len()) - 1;
        let mut inputs = Vec::with_capacity(batch * len);
        let mut targets = Vec::with_capacity(batch * len);
        for w in &items {
            inputs.extend(w[..len].iter().map(|&i| i as i64));
            targets.extend(w[1..].iter().map(|&i| i as i64));
        }
        TokenBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, [batch, len]), device),
            targets: Tensor::from_data(TensorData::new(targets, [batch, len]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_round_trips_and_names_unknown_characters() {
        let vocab = CharVocab::from_text("hello world\n");
        assert_eq!(
            vocab.chars,
            vec!['\n', ' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
        );
        let ids = vocab.encode("hold", "prompt").unwrap();
        assert_eq!(vocab.decode(&ids), "hold");
        let err = vocab.encode("Hello!", "prompt").unwrap_err().to_string();
        assert!(
            err.contains("'!'") && err.contains("'H'") && err.contains("prompt"),
            "{err}"
        );
    }

    #[test]
    fn windows_cover_the_stream_once() {
        let tokens = Arc::new((0..11).collect::<Vec<u32>>());
        let w = Windows::new(tokens, 3);
        assert_eq!(w.len(), 3);
        assert_eq!(w.get(0).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(w.get(2).unwrap(), vec![6, 7, 8, 9]);
        assert!(w.get(3).is_err());
        let every = Windows::overlapping(Arc::new((0..11).collect()), 3, 1);
        assert_eq!(every.len(), 8);
        assert_eq!(every.get(7).unwrap(), vec![7, 8, 9, 10]);
        assert!(every.get(8).is_err());
    }

    #[test]
    fn bad_corpora_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        assert!(
            read_corpus(&empty)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        let latin1 = dir.path().join("latin1.txt");
        std::fs::write(&latin1, b"caf\xe9 au lait").unwrap();
        let err = read_corpus(&latin1).unwrap_err().to_string();
        assert!(
            err.contains("not valid UTF-8") && err.contains("offset 3"),
            "{err}"
        );
        let err = EncodedCorpus::split("short text", &empty, 64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--seq-len 64"), "{err}");
    }
}
