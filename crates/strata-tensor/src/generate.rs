//! Text generation shared by every text model (char-level LSTMs, GPT-2), with Hugging Face
//! `transformers`' `generate` semantics.
//!
//! A model implements [`Decoder`]: it runs the prompt once ([`Decoder::prefill`]) and then feeds
//! one token at a time ([`Decoder::step`]), keeping its own state (hidden state, KV cache) and
//! returning the last position's logits as a plain `Vec<f32>`. [`generate`] drives the loop:
//! prefill, pick a token, stream it to a callback, stop on an end-of-sequence token, on the
//! callback's `Break`, on `max_new_tokens` or when the context is full, else feed it back.
//!
//! [`LogitsProcessor::sample`] picks each token by applying HF's processors in HF's order:
//! 1. repetition penalty over the distinct tokens seen so far (prompt and generated);
//! 2. greedy (HF `do_sample=False`): arg-max, and nothing else;
//! 3. sampling: temperature, top-k, top-p (nucleus), then softmax and one categorical draw from
//!    one uniform number of a seeded RNG per token ([`sample_categorical`]).
//!
//! Every step is a pure `pub` function over `&[f32]` so that it can be tested by hand.

use std::ops::ControlFlow;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Why generation could not run: bad options or prompt, or a failing model.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Invalid options or prompt (a one-line message naming the flag or the problem).
    #[error("{0}")]
    Invalid(String),
    /// The model failed (its own message).
    #[error("{0}")]
    Model(String),
}

/// How the next token is chosen from the logits (HF's `GenerationConfig` sampling fields).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Arg-max decoding (HF `do_sample=False`): temperature, top-k and top-p are not applied.
    pub greedy: bool,
    /// Logits are divided by it before top-k/top-p; must be finite and above 0 unless greedy.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (ties at the k-th value are kept); at least 1.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`, in (0, 1].
    pub top_p: Option<f32>,
    /// HF's repetition penalty (above 1 discourages repeats); finite and above 0.
    pub repetition_penalty: Option<f32>,
    /// Seed of the sampling RNG.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            greedy: false,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
            seed: 42,
        }
    }
}

impl SamplingConfig {
    /// Checks the values, with one-line errors that name the command-line flag.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let invalid = |msg: String| Err(GenerateError::Invalid(msg));
        let t = self.temperature;
        let temperature_ok = t.is_finite() && t > 0.0;
        if !self.greedy && !temperature_ok {
            return invalid(format!(
                "--temperature must be above 0 (use --greedy for argmax decoding), not {t}"
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return invalid(format!("--top-p must be in (0, 1], not {p}"));
        }
        if self.top_k == Some(0) {
            return invalid("--top-k must be at least 1, not 0".to_string());
        }
        if let Some(r) = self.repetition_penalty
            && !(r.is_finite() && r > 0.0)
        {
            return invalid(format!(
                "--repetition-penalty must be a finite number above 0, not {r}"
            ));
        }
        Ok(())
    }
}

/// HF's `RepetitionPenaltyLogitsProcessor`: each distinct token of `previous` gets its logit
/// multiplied by `penalty` if negative, divided by it otherwise. Out-of-vocabulary ids are skipped.
pub fn apply_repetition_penalty(logits: &mut [f32], previous: &[u32], penalty: f32) {
    let mut seen = vec![false; logits.len()];
    for &token in previous {
        let i = token as usize;
        if i < logits.len() && !seen[i] {
            seen[i] = true;
            let score = logits[i];
            logits[i] = if score < 0.0 {
                score * penalty
            } else {
                score / penalty
            };
        }
    }
}

/// HF's `TopKLogitsWarper`: sets to `-inf` every logit below the `k`-th largest, so ties at the
/// k-th value are all kept. `k == 0` or `k >= len` changes nothing.
pub fn apply_top_k(logits: &mut [f32], k: usize) {
    if k == 0 || k >= logits.len() {
        return;
    }
    let mut values = logits.to_vec();
    let (_, &mut kth, _) = values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    for x in logits.iter_mut().filter(|x| **x < kth) {
        *x = f32::NEG_INFINITY;
    }
}

/// HF's `TopPLogitsWarper`: sorts the logits ascending, takes the cumulative softmax and sets to
/// `-inf` the tokens whose cumulative probability is `<= 1 - top_p`, always keeping the most
/// probable one; equal logits are ordered by token id. `top_p >= 1` changes nothing (HF does not
/// add the warper then).
pub fn apply_top_p(logits: &mut [f32], top_p: f32) {
    if top_p >= 1.0 || logits.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    let sorted: Vec<f32> = order.iter().map(|&i| logits[i]).collect();
    let probs = softmax(&sorted);
    let last = order.len() - 1;
    let mut cumulative = 0.0f32;
    for (rank, (&i, p)) in order.iter().zip(probs).enumerate() {
        cumulative += p;
        if rank < last && cumulative <= 1.0 - top_p {
            logits[i] = f32::NEG_INFINITY;
        }
    }
}

/// Softmax in `f32`, shifted by the largest non-NaN value: `-inf` logits get probability 0; if no
/// logit is finite the result is NaN (as in PyTorch).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Index of the largest value, the first one on ties; NaN values are ignored (0 for an empty or
/// all-NaN slice).
pub fn argmax(values: &[f32]) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in values.iter().enumerate() {
        if !x.is_nan() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Draws an index from `probs` with one uniform number `u` in [0, 1): the first index whose
/// cumulative probability exceeds `u` times the total. Zero, negative and NaN entries are never
/// drawn; `None` when no entry is positive and finite.
pub fn sample_categorical(probs: &[f32], u: f32) -> Option<usize> {
    let usable = |p: f32| p.is_finite() && p > 0.0;
    let total: f64 = probs
        .iter()
        .copied()
        .filter(|&p| usable(p))
        .map(f64::from)
        .sum();
    let target = f64::from(u) * total;
    let mut cumulative = 0.0f64;
    let mut last = None;
    for (i, &p) in probs.iter().enumerate().filter(|&(_, &p)| usable(p)) {
        cumulative += f64::from(p);
        if cumulative > target {
            return Some(i);
        }
        last = Some(i); // rounding: fall back to the last drawable index
    }
    last
}

/// Turns logits into the next token: HF's processors in HF's order, then arg-max or one draw.
#[derive(Debug)]
pub struct LogitsProcessor {
    config: SamplingConfig,
    rng: StdRng,
}

impl LogitsProcessor {
    /// Validates `config` and seeds the RNG with `config.seed`.
    pub fn new(config: &SamplingConfig) -> Result<Self, GenerateError> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            rng: StdRng::seed_from_u64(config.seed),
        })
    }

    /// Picks the next token from `logits` (modified in place), `previous` being every token so far
    /// (prompt and generated), for the repetition penalty. Sampling draws exactly one uniform
    /// number per call; if the processed distribution has no positive finite probability (a model
    /// returning NaN or `+inf`), it falls back to arg-max.
    pub fn sample(&mut self, logits: &mut [f32], previous: &[u32]) -> u32 {
        let c = &self.config;
        if let Some(penalty) = c.repetition_penalty {
            apply_repetition_penalty(logits, previous, penalty);
        }
        if c.greedy {
            return argmax(logits) as u32;
        }
        if c.temperature != 1.0 {
            logits.iter_mut().for_each(|x| *x /= c.temperature);
        }
        if let Some(k) = c.top_k {
            apply_top_k(logits, k);
        }
        if let Some(p) = c.top_p {
            apply_top_p(logits, p);
        }
        let u: f32 = self.rng.random();
        sample_categorical(&softmax(logits), u).unwrap_or_else(|| argmax(logits)) as u32
    }
}

/// A model that generates one token at a time, keeping its own state (an LSTM's hidden state,
/// GPT-2's KV cache).
pub trait Decoder {
    /// Runs the prompt and returns the logits for the token after it (its whole vocabulary).
    fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>, GenerateError>;
    /// Feeds one more token and returns the logits for the next one.
    fn step(&mut self, token: u32) -> Result<Vec<f32>, GenerateError>;
    /// Longest sequence (prompt + generated) the model can attend to; None for recurrent models.
    fn max_len(&self) -> Option<usize> {
        None
    }
}

/// What [`generate`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to generate (HF `max_new_tokens`); 0 returns an empty generation at once.
    pub max_new_tokens: usize,
    /// How each token is chosen.
    pub sampling: SamplingConfig,
    /// End-of-sequence tokens: generation stops after one of them, which is kept (as in HF).
    pub eos: Vec<u32>,
}

impl GenerateOptions {
    /// Greedy (argmax) decoding of `max_new_tokens` tokens, with no end-of-sequence token: what
    /// benchmarks and comparisons between models run.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            sampling: SamplingConfig {
                greedy: true,
                ..SamplingConfig::default()
            },
            eos: Vec::new(),
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `max_new_tokens` tokens were generated.
    MaxNewTokens,
    /// An end-of-sequence token was generated (it is the last of `generated_ids`).
    Eos,
    /// The callback returned `Break` (e.g. the caller found a stop string); its token is kept.
    Callback,
    /// Prompt plus generated tokens reached the model's [`Decoder::max_len`].
    ContextFull,
}

/// The result of [`generate`], with timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The prompt, as given.
    pub prompt_ids: Vec<u32>,
    /// The generated tokens (including a final end-of-sequence token, if any).
    pub generated_ids: Vec<u32>,
    /// Why generation stopped.
    pub stop: StopReason,
    /// Time to first token: [`Decoder::prefill`] plus sampling the first token.
    pub prompt_seconds: f64,
    /// Time for the tokens after the first: every [`Decoder::step`] call plus the sampling of
    /// its token (the callback is timed by neither field).
    pub decode_seconds: f64,
}

impl Generation {
    /// Prompt tokens per second of time to first token (0 when nothing was timed).
    pub fn prompt_tokens_per_s(&self) -> f64 {
        rate(self.prompt_ids.len(), self.prompt_seconds)
    }

    /// Tokens per second after the first one: `(generated - 1) / decode_seconds`, each of those
    /// tokens costing one `step` and one sampling (0 when nothing was timed).
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(
            self.generated_ids.len().saturating_sub(1),
            self.decode_seconds,
        )
    }
}

fn rate(tokens: usize, seconds: f64) -> f64 {
    if tokens == 0 || seconds <= 0.0 {
        0.0
    } else {
        tokens as f64 / seconds
    }
}

/// Generates up to `options.max_new_tokens` tokens after `prompt`, calling `on_token` with each
/// token as soon as it is chosen (end-of-sequence tokens included).
///
/// Stops, in this order of precedence, on an `options.eos` token, on the callback's `Break`, after
/// `max_new_tokens` tokens, or when prompt plus generated tokens reach `model.max_len()` (so the
/// whole sequence still fits the context; a prompt that fills it exactly returns no token with
/// [`StopReason::ContextFull`]). `step` is never called for the last token. `max_new_tokens == 0`
/// returns an empty generation without calling the model. Errors on invalid sampling options, an
/// empty prompt, a prompt longer than `max_len`, a model error, or empty logits.
pub fn generate<D: Decoder + ?Sized>(
    model: &mut D,
    prompt: &[u32],
    options: &GenerateOptions,
    on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation, GenerateError> {
    let mut processor = LogitsProcessor::new(&options.sampling)?;
    if prompt.is_empty() {
        return Err(GenerateError::Invalid(
            "the prompt is empty: give at least one token".into(),
        ));
    }
    let max_len = model.max_len();
    if let Some(m) = max_len
        && prompt.len() > m
    {
        return Err(GenerateError::Invalid(format!(
            "the prompt has {} tokens but the model's context is {m}",
            prompt.len()
        )));
    }
    let mut result = Generation {
        prompt_ids: prompt.to_vec(),
        generated_ids: Vec::new(),
        stop: StopReason::MaxNewTokens,
        prompt_seconds: 0.0,
        decode_seconds: 0.0,
    };
    if options.max_new_tokens == 0 {
        return Ok(result);
    }
    if max_len == Some(prompt.len()) {
        result.stop = StopReason::ContextFull;
        return Ok(result);
    }
    let mut sequence = prompt.to_vec();
    // Restarted before every model call and read after sampling: times call plus sampling.
    let mut timer = Instant::now();
    let mut logits = model.prefill(prompt)?;
    loop {
        if logits.is_empty() {
            return Err(GenerateError::Model("the model returned no logits".into()));
        }
        let token = processor.sample(&mut logits, &sequence);
        let seconds = timer.elapsed().as_secs_f64();
        if result.generated_ids.is_empty() {
            result.prompt_seconds = seconds;
        } else {
            result.decode_seconds += seconds;
        }
        sequence.push(token);
        result.generated_ids.push(token);
        let flow = on_token(token);
        result.stop = if options.eos.contains(&token) {
            StopReason::Eos
        } else if flow.is_break() {
            StopReason::Callback
        } else if result.generated_ids.len() >= options.max_new_tokens {
            StopReason::MaxNewTokens
        } else if max_len.is_some_and(|m| sequence.len() >= m) {
            StopReason::ContextFull
        } else {
            timer = Instant::now();
            logits = model.step(token)?;
            continue;
        };
        return Ok(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic logits: a little noise per (position, token), plus `peak` on `last + 1`.
    #[derive(Default)]
    struct Fake {
        vocab: usize,
        peak: f32,
        max_len: Option<usize>,
        pos: usize,
        last: u32,
        prefills: usize,
        steps: usize,
    }

    impl Fake {
        fn logits(&self) -> Vec<f32> {
            let next = (self.last as usize + 1) % self.vocab;
            let noise = |i: usize| ((self.pos * 31 + i * 17) as f32 * 0.37).sin();
            (0..self.vocab)
                .map(|i| noise(i) + self.peak * f32::from(u8::from(i == next)))
                .collect()
        }
    }

    impl Decoder for Fake {
        fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>, GenerateError> {
            (self.prefills, self.pos, self.last) =
                (self.prefills + 1, prompt.len(), prompt[prompt.len() - 1]);
            Ok(self.logits())
        }
        fn step(&mut self, token: u32) -> Result<Vec<f32>, GenerateError> {
            (self.steps, self.pos, self.last) = (self.steps + 1, self.pos + 1, token);
            Ok(self.logits())
        }
        fn max_len(&self) -> Option<usize> {
            self.max_len
        }
    }

    /// A vocabulary of 10 whose arg-max is always the last token plus one.
    fn counting() -> Fake {
        Fake {
            vocab: 10,
            peak: 10.0,
            ..Fake::default()
        }
    }

    /// A vocabulary of 50 with only noise.
    fn noisy() -> Fake {
        Fake {
            vocab: 50,
            ..Fake::default()
        }
    }

    /// The default sampling config, changed by `f`.
    fn with(f: impl FnOnce(&mut SamplingConfig)) -> SamplingConfig {
        let mut config = SamplingConfig::default();
        f(&mut config);
        config
    }

    fn greedy() -> SamplingConfig {
        with(|c| c.greedy = true)
    }

    /// Generates with `max_new_tokens` tokens and no eos, keeping every token.
    fn run(
        model: &mut Fake,
        prompt: &[u32],
        max: usize,
        sampling: SamplingConfig,
    ) -> Result<Generation, GenerateError> {
        let options = GenerateOptions {
            max_new_tokens: max,
            sampling,
            eos: vec![],
        };
        generate(model, prompt, &options, &mut |_| ControlFlow::Continue(()))
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (x - y).abs() < 1e-6)
    }

    #[test]
    fn softmax_argmax_and_draw() {
        assert!(close(&softmax(&[0.0, 3f32.ln()]), &[0.25, 0.75]));
        assert!(close(&softmax(&[1.0, f32::NEG_INFINITY]), &[1.0, 0.0]));
        assert!(close(&softmax(&[1000.0, 1000.0]), &[0.5, 0.5]));
        assert_eq!(argmax(&[1.0, f32::NAN, 3.0, 3.0]), 2);
        assert_eq!((argmax(&[f32::NAN]), argmax(&[])), (0, 0));
        let probs = [0.25, 0.0, 0.75];
        let draws = [0.0, 0.2, 0.3, 0.999_999].map(|u| sample_categorical(&probs, u));
        assert_eq!(draws, [Some(0), Some(0), Some(2), Some(2)]);
        assert_eq!(sample_categorical(&[0.0, f32::NAN], 0.5), None);
    }

    #[test]
    fn repetition_penalty_top_k_top_p() {
        // Token 1 twice is penalised once; 9 is out of the vocabulary; 0.0 stays 0.
        let mut logits = [2.0, -2.0, 1.0, 0.0];
        apply_repetition_penalty(&mut logits, &[0, 1, 1, 9, 3], 2.0);
        assert_eq!(logits, [1.0, -4.0, 1.0, 0.0]);

        let inf = f32::NEG_INFINITY;
        let mut logits = [1.0, 3.0, 3.0, 2.0];
        apply_top_k(&mut logits, 1); // both values tied at the top are kept
        assert_eq!(logits, [inf, 3.0, 3.0, inf]);
        apply_top_k(&mut logits, 4);
        assert_eq!(logits, [inf, 3.0, 3.0, inf]);
        let mut logits = [1.0, 3.0, 3.0, 2.0];
        apply_top_k(&mut logits, 3);
        assert_eq!(logits, [inf, 3.0, 3.0, 2.0]);

        // Probabilities 0.1, 0.4, 0.2, 0.3: ascending cumulative 0.1, 0.3, 0.6, 1.0. A top_p
        // removes cumulative <= 1 - top_p: 0.5 removes 0.1 and 0.2, 0.75 removes 0.1, 0.01
        // keeps only the most probable token, 1 keeps everything.
        let probs = [0.1f32, 0.4, 0.2, 0.3];
        let removed = |top_p| {
            let mut logits = probs.map(f32::ln);
            apply_top_p(&mut logits, top_p);
            logits.map(|x| x == inf)
        };
        assert_eq!(removed(0.5), [true, false, true, false]);
        assert_eq!(removed(0.75), [true, false, false, false]);
        assert_eq!(removed(0.01), [true, false, true, true]);
        assert_eq!(removed(1.0), [false; 4]);
    }

    #[test]
    fn validate_names_the_flag() {
        let error = |c: SamplingConfig| c.validate().map_err(|e| e.to_string()).unwrap_err();
        assert_eq!(
            error(with(|c| c.temperature = -1.0)),
            "--temperature must be above 0 (use --greedy for argmax decoding), not -1"
        );
        assert!(error(with(|c| c.temperature = f32::NAN)).starts_with("--temperature"));
        assert!(error(with(|c| c.top_p = Some(0.0))).starts_with("--top-p"));
        assert!(error(with(|c| c.top_p = Some(1.5))).starts_with("--top-p"));
        assert!(error(with(|c| c.top_k = Some(0))).starts_with("--top-k"));
        assert!(
            error(with(|c| c.repetition_penalty = Some(0.0))).starts_with("--repetition-penalty")
        );
        assert!(
            with(|c| (c.greedy, c.temperature) = (true, -1.0))
                .validate()
                .is_ok()
        );
        assert!(with(|c| c.top_p = Some(1.0)).validate().is_ok());
    }

    #[test]
    fn greedy_picks_argmax_and_never_steps_after_the_last_token() {
        let mut model = counting();
        let g = run(&mut model, &[3], 5, greedy()).unwrap();
        assert_eq!(
            (g.generated_ids, g.stop),
            (vec![4, 5, 6, 7, 8], StopReason::MaxNewTokens)
        );
        assert_eq!((model.prefills, model.steps), (1, 4));
        let mut model = counting();
        assert!(
            run(&mut model, &[3], 0, greedy())
                .unwrap()
                .generated_ids
                .is_empty()
        );
        assert_eq!(model.prefills, 0);
    }

    #[test]
    fn penalty_is_applied_before_argmax() {
        let mut processor = LogitsProcessor::new(&with(|c| {
            (c.greedy, c.repetition_penalty) = (true, Some(2.0))
        }))
        .unwrap();
        assert_eq!(processor.sample(&mut [3.0, 2.0], &[]), 0);
        assert_eq!(processor.sample(&mut [3.0, 2.0], &[0]), 1); // 3 / 2 < 2
    }

    #[test]
    fn seeds_are_reproducible() {
        let sampled = |seed| {
            run(&mut noisy(), &[1], 30, with(|c| c.seed = seed))
                .unwrap()
                .generated_ids
        };
        assert_eq!(sampled(1), sampled(1));
        assert_ne!(sampled(1), sampled(2));
    }

    #[test]
    fn eos_and_callback_stop_keeping_their_token() {
        let options = GenerateOptions {
            max_new_tokens: 10,
            sampling: greedy(),
            eos: vec![6],
        };
        let mut streamed = Vec::new();
        let g = generate(&mut counting(), &[3], &options, &mut |t| {
            streamed.push(t);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            (g.generated_ids.clone(), g.stop),
            (vec![4, 5, 6], StopReason::Eos)
        );
        assert_eq!(streamed, g.generated_ids);

        let mut stop_at_5 = |t| {
            if t == 5 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let g = generate(&mut counting(), &[3], &options, &mut stop_at_5).unwrap();
        assert_eq!(
            (g.generated_ids, g.stop),
            (vec![4, 5], StopReason::Callback)
        );
    }

    #[test]
    fn context_limits() {
        let mut model = Fake {
            max_len: Some(4),
            ..counting()
        };
        let g = run(&mut model, &[1, 2], 10, greedy()).unwrap();
        assert_eq!(
            (g.generated_ids, g.stop, model.steps),
            (vec![3, 4], StopReason::ContextFull, 1)
        );
        let g = run(&mut model, &[1, 2, 3, 4], 10, greedy()).unwrap();
        assert_eq!(
            (g.generated_ids.len(), g.stop),
            (0, StopReason::ContextFull)
        );
        let error = run(&mut model, &[1, 2, 3, 4, 5], 10, greedy())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "the prompt has 5 tokens but the model's context is 4"
        );
        let error = run(&mut model, &[], 10, greedy()).unwrap_err().to_string();
        assert_eq!(error, "the prompt is empty: give at least one token");
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let tokens = |sampling| run(&mut noisy(), &[7], 25, sampling).unwrap().generated_ids;
        let reference = tokens(greedy());
        assert_eq!(tokens(with(|c| c.top_k = Some(1))), reference);
        assert_eq!(
            tokens(with(|c| (c.top_p, c.temperature) = (Some(1e-6), 0.7))),
            reference
        );
        assert_ne!(tokens(SamplingConfig::default()), reference);
    }

    #[test]
    fn sampling_frequency_matches_softmax() {
        let mut processor = LogitsProcessor::new(&SamplingConfig::default()).unwrap();
        let ones = (0..20_000)
            .filter(|_| processor.sample(&mut [0.0, 3f32.ln()], &[]) == 1)
            .count();
        let frequency = ones as f64 / 20_000.0;
        assert!((frequency - 0.75).abs() < 0.02, "frequency {frequency}"); // softmax: 0.25, 0.75
    }
}
