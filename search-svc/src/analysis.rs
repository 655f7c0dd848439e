//! The two tantivy tokenizers of the index, used the same way for documents and queries.
//!
//! - `ko` (text fields): Latin and digit runs become one lower-cased token each; a
//!   Hangul run becomes its syllable bigrams (방탄소년단 → 방탄 탄소 소년 년단), or one
//!   token when it is a single syllable. Consecutive bigrams take consecutive
//!   positions, so a phrase query over a word's bigrams is a substring match: 방탄소년단
//!   matches 방탄소년단의 without a dictionary.
//! - `chosung` (the title's initials): each Hangul run is reduced to its initial
//!   consonants and bigrammed the same way, so ㅂㅌㅅㄴㄷ finds 방탄소년단. Lone
//!   consonants in the input (a chosung query) stay as they are.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use crate::korean;

pub const TEXT_TOKENIZER: &str = "ko";
pub const CHOSUNG_TOKENIZER: &str = "chosung";

/// Which of the two analyses a [`KoreanTokenizer`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    Chosung,
}

/// A tokenizer that computes every token of a text up front.
#[derive(Debug, Clone)]
pub struct KoreanTokenizer {
    mode: Mode,
    tokens: Vec<Token>,
}

impl KoreanTokenizer {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            tokens: Vec::new(),
        }
    }
}

pub struct VecTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    next: usize,
}

impl Tokenizer for KoreanTokenizer {
    type TokenStream<'a> = VecTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream<'a> {
        self.tokens.clear();
        analyze_into(self.mode, text, &mut self.tokens);
        VecTokenStream {
            tokens: &mut self.tokens,
            next: 0,
        }
    }
}

impl TokenStream for VecTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

/// The tokens of `text`, as the index sees them.
pub fn analyze(mode: Mode, text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    analyze_into(mode, text, &mut tokens);
    tokens
}

fn analyze_into(mode: Mode, text: &str, tokens: &mut Vec<Token>) {
    let mut position = 0usize;
    for (start, _, word) in korean::words(text) {
        // Split a word into script runs: Hangul vs everything else ("bts월드" → bts, 월드).
        let mut run: Vec<(usize, char)> = Vec::new();
        let mut run_hangul = false;
        for (i, c) in word.char_indices() {
            let hangul = korean::is_hangul(c);
            if !run.is_empty() && hangul != run_hangul {
                emit_run(mode, text, start, &run, run_hangul, &mut position, tokens);
                run.clear();
            }
            run_hangul = hangul;
            run.push((i, c));
        }
        if !run.is_empty() {
            emit_run(mode, text, start, &run, run_hangul, &mut position, tokens);
        }
    }
}

fn emit_run(
    mode: Mode,
    text: &str,
    base: usize,
    run: &[(usize, char)],
    hangul: bool,
    position: &mut usize,
    tokens: &mut Vec<Token>,
) {
    let end_of = |k: usize| base + run[k].0 + run[k].1.len_utf8();
    let mut push = |from: usize, to: usize, token_text: String| {
        tokens.push(Token {
            offset_from: from,
            offset_to: to,
            position: *position,
            text: token_text,
            position_length: 1,
        });
        *position += 1;
    };
    if !hangul {
        if mode == Mode::Text {
            let from = base + run[0].0;
            let to = end_of(run.len() - 1);
            push(from, to, text[from..to].to_lowercase());
        }
        return;
    }
    let letters: Vec<char> = match mode {
        Mode::Text => run.iter().map(|(_, c)| *c).collect(),
        Mode::Chosung => run
            .iter()
            .map(|(_, c)| korean::initial(*c).unwrap_or(*c))
            .collect(),
    };
    if letters.len() == 1 {
        push(base + run[0].0, end_of(0), letters[0].to_string());
        return;
    }
    for k in 0..letters.len() - 1 {
        let mut bigram = String::with_capacity(8);
        bigram.push(letters[k]);
        bigram.push(letters[k + 1]);
        push(base + run[k].0, end_of(k + 1), bigram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(mode: Mode, s: &str) -> Vec<String> {
        analyze(mode, s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn hangul_becomes_bigrams_and_latin_words() {
        assert_eq!(
            texts(Mode::Text, "BTS 방탄소년단!"),
            ["bts", "방탄", "탄소", "소년", "년단"]
        );
        assert_eq!(texts(Mode::Text, "잠실 돔"), ["잠실", "돔"]);
        assert_eq!(texts(Mode::Text, "bts월드"), ["bts", "월드"]);
    }

    #[test]
    fn chosung_of_titles_and_queries_agree() {
        assert_eq!(
            texts(Mode::Chosung, "방탄소년단 Live"),
            texts(Mode::Chosung, "ㅂㅌㅅㄴㄷ")
        );
    }

    #[test]
    fn offsets_point_at_the_original_text() {
        let text = "Hi 방탄소년";
        for t in analyze(Mode::Text, text) {
            assert!(text.get(t.offset_from..t.offset_to).is_some());
        }
    }
}
