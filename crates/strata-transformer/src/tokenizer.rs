//! Text ↔ token ids, with Hugging Face's `tokenizers` crate.
//!
//! A model dir holds its tokenizer as `tokenizer.json` (any kind `tokenizers` reads), or as
//! GPT-2's original `vocab.json` + `merges.txt`, from which GPT-2's byte-level BPE is built
//! with the settings of `openai-community/gpt2`. Small GPTs trained on characters get a
//! character tokenizer ([`TextTokenizer::characters`]) written as `tokenizer.json`, which
//! `transformers` reads too.

use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

/// The files a tokenizer is read from, in order of preference.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// GPT-2's original vocabulary file.
pub const VOCAB_FILE: &str = "vocab.json";
/// GPT-2's original merges file.
pub const MERGES_FILE: &str = "merges.txt";
/// GPT-2's end-of-text token.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// A tokenizer that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The files are missing or unreadable.
    #[error("cannot read the tokenizer {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// Text the tokenizer cannot encode.
    #[error("cannot tokenize the {what}: {why}")]
    Encode {
        /// `prompt`, `corpus`.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// The tokenizer could not be written.
    #[error("cannot write {path}: {why}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// A tokenizer and what generation needs from it.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Reads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let inner = Tokenizer::from_file(path).map_err(|e| TokenizerError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(Self { inner })
    }

    /// GPT-2's byte-level BPE from its `vocab.json` and `merges.txt` (no prefix space,
    /// `<|endoftext|>` as a special token), as `GPT2TokenizerFast` builds it.
    pub fn gpt2_from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Self, TokenizerError> {
        let read = |why: String| TokenizerError::Read {
            path: format!("{} + {}", vocab.display(), merges.display()),
            why,
        };
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .build()
            .map_err(|e| read(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(
                tokenizers::pre_tokenizers::byte_level::ByteLevel::default()
                    .add_prefix_space(false),
            ))
            .with_decoder(Some(ByteLevel::default()))
            .with_post_processor(Some(
                tokenizers::processors::byte_level::ByteLevel::default().trim_offsets(false),
            ));
        if inner.token_to_id(END_OF_TEXT).is_some() {
            inner.add_special_tokens(&[AddedToken::from(END_OF_TEXT, true)]);
        }
        Ok(Self { inner })
    }

    /// A tokenizer with one token per character of `chars` (in order: id = index), decoding by
    /// concatenation: a BPE model without merges and without pre-tokenizer, so `transformers`'
    /// `PreTrainedTokenizerFast` reads it as it is. Characters outside `chars` are refused by
    /// [`encode`](Self::encode).
    pub fn characters(chars: &[char]) -> Result<Self, TokenizerError> {
        let vocab: tokenizers::models::bpe::Vocab = chars
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, Vec::new())
            .build()
            .map_err(|e| TokenizerError::Read {
                path: "<characters>".into(),
                why: e.to_string(),
            })?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_decoder(Some(Fuse::new()));
        Ok(Self { inner })
    }

    /// Reads the tokenizer of a model dir: `tokenizer.json`, else `vocab.json` + `merges.txt`.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let json = dir.join(TOKENIZER_FILE);
        if json.is_file() {
            return Self::from_file(&json);
        }
        let (vocab, merges) = (dir.join(VOCAB_FILE), dir.join(MERGES_FILE));
        if vocab.is_file() && merges.is_file() {
            return Self::gpt2_from_vocab_merges(&vocab, &merges);
        }
        Err(TokenizerError::Read {
            path: dir.display().to_string(),
            why: format!("it has neither {TOKENIZER_FILE} nor {VOCAB_FILE} + {MERGES_FILE}"),
        })
    }

    /// Tokens in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The ids of `text` (no special tokens added, as GPT-2's tokenizer). Text whose characters
    /// the vocabulary lacks is refused, naming them.
    pub fn encode(&self, text: &str, what: &'static str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode {
                what,
                why: e.to_string(),
            })?;
        let ids = encoding.get_ids().to_vec();
        let decoded = self.decode(&ids);
        if decoded != text {
            let missing: std::collections::BTreeSet<char> =
                text.chars().filter(|c| !decoded.contains(*c)).collect();
            if !missing.is_empty() {
                let listed: Vec<String> =
                    missing.iter().take(10).map(|c| format!("{c:?}")).collect();
                return Err(TokenizerError::Encode {
                    what,
                    why: format!(
                        "the tokenizer has no token for {}; use only characters of its vocabulary",
                        listed.join(", ")
                    ),
                });
            }
        }
        Ok(ids)
    }

    /// The text of `ids` (special tokens kept, as `transformers`' `decode`).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    /// A decoder of one token at a time that yields text only once it is whole (a byte-level
    /// token can end inside a UTF-8 character).
    pub fn stream(&self) -> TextStream<'_> {
        TextStream {
            tokenizer: self,
            ids: Vec::new(),
            emitted: 0,
        }
    }

    /// Writes `tokenizer.json` into `dir` (through a temporary name).
    pub fn save(&self, dir: &Path) -> Result<PathBuf, TokenizerError> {
        let path = dir.join(TOKENIZER_FILE);
        let err = |why: String| TokenizerError::Write {
            path: path.display().to_string(),
            why,
        };
        let text = self.inner.to_string(true).map_err(|e| err(e.to_string()))?;
        strata_data::fsutil::write_atomic(&path, text.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        Ok(path)
    }
}

/// See [`TextTokenizer::stream`].
#[derive(Debug)]
pub struct TextStream<'a> {
    tokenizer: &'a TextTokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream<'_> {
    /// Adds `id` and returns the text that became whole (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids);
        if text.ends_with('\u{FFFD}')
            || text.len() < self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return String::new();
        }
        let new = text[self.emitted..].to_string();
        self.emitted = text.len();
        new
    }

    /// Everything decoded so far.
    pub fn text(&self) -> String {
        self.tokenizer.decode(&self.ids)
    }
}
