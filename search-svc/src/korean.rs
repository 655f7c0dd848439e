//! Hangul without a dictionary: syllable decomposition into jamo, initial consonants
//! (chosung) and the text normalisation every analyzer here shares.
//!
//! A precomposed syllable is `0xAC00 + (initial * 21 + medial) * 28 + final`. The
//! keyboard shows compatibility jamo (ㄱ U+3131 …) while a word is being typed, so
//! everything is mapped to compatibility jamo, and compound vowels and consonants are
//! split into the keys that type them (ㅘ → ㅗㅏ, ㄳ → ㄱㅅ): then "방타" is a jamo
//! prefix of "방탄" and "오" of "와".

const SYLLABLE_FIRST: u32 = 0xAC00;
const SYLLABLE_LAST: u32 = 0xD7A3;

/// Initial consonants in syllable order, as compatibility jamo.
const INITIALS: [char; 19] = [
    'ㄱ', 'ㄲ', 'ㄴ', 'ㄷ', 'ㄸ', 'ㄹ', 'ㅁ', 'ㅂ', 'ㅃ', 'ㅅ', 'ㅆ', 'ㅇ', 'ㅈ', 'ㅉ', 'ㅊ', 'ㅋ',
    'ㅌ', 'ㅍ', 'ㅎ',
];

/// Medial vowels in syllable order, each as the keys that type it.
const MEDIALS: [&str; 21] = [
    "ㅏ", "ㅐ", "ㅑ", "ㅒ", "ㅓ", "ㅔ", "ㅕ", "ㅖ", "ㅗ", "ㅗㅏ", "ㅗㅐ", "ㅗㅣ", "ㅛ", "ㅜ",
    "ㅜㅓ", "ㅜㅔ", "ㅜㅣ", "ㅠ", "ㅡ", "ㅡㅣ", "ㅣ",
];

/// Final consonants in syllable order (index 0: none), each as the keys that type it.
const FINALS: [&str; 28] = [
    "", "ㄱ", "ㄲ", "ㄱㅅ", "ㄴ", "ㄴㅈ", "ㄴㅎ", "ㄷ", "ㄹ", "ㄹㄱ", "ㄹㅁ", "ㄹㅂ", "ㄹㅅ",
    "ㄹㅌ", "ㄹㅍ", "ㄹㅎ", "ㅁ", "ㅂ", "ㅂㅅ", "ㅅ", "ㅆ", "ㅇ", "ㅈ", "ㅊ", "ㅋ", "ㅌ", "ㅍ",
    "ㅎ",
];

/// Whether `c` is a precomposed Hangul syllable (가…힣).
pub fn is_syllable(c: char) -> bool {
    (SYLLABLE_FIRST..=SYLLABLE_LAST).contains(&u32::from(c))
}

/// Whether `c` is a compatibility jamo (ㄱ…ㅣ), what a keyboard shows mid-syllable.
pub fn is_compat_jamo(c: char) -> bool {
    ('\u{3131}'..='\u{3163}').contains(&c)
}

/// Whether `c` is a compatibility consonant (ㄱ…ㅎ).
pub fn is_consonant(c: char) -> bool {
    ('\u{3131}'..='\u{314E}').contains(&c)
}

/// Whether `c` belongs to a Hangul word (a syllable or a lone jamo).
pub fn is_hangul(c: char) -> bool {
    is_syllable(c) || is_compat_jamo(c)
}

/// The initial consonant of a syllable, or `None` for anything else.
pub fn initial(c: char) -> Option<char> {
    if !is_syllable(c) {
        return None;
    }
    let index = (u32::from(c) - SYLLABLE_FIRST) / (21 * 28);
    INITIALS.get(index as usize).copied()
}

/// Whether a query word is made only of consonants, so it asks for initials.
pub fn is_chosung_query(word: &str) -> bool {
    let mut chars = word.chars().peekable();
    chars.peek().is_some() && chars.all(is_consonant)
}

/// The initials of a Hangul word (non-syllables are dropped): 방탄소년단 → ㅂㅌㅅㄴㄷ.
pub fn chosung(word: &str) -> String {
    word.chars().filter_map(initial).collect()
}

/// Appends the keystrokes of `c` to `out`: a syllable becomes its jamo, a compound
/// jamo its parts, anything else is lower-cased.
pub fn push_keys(c: char, out: &mut String) {
    if is_syllable(c) {
        let offset = u32::from(c) - SYLLABLE_FIRST;
        let (i, m, f) = (offset / (21 * 28), (offset / 28) % 21, offset % 28);
        if let Some(initial) = INITIALS.get(i as usize) {
            out.push(*initial);
        }
        out.push_str(MEDIALS.get(m as usize).copied().unwrap_or_default());
        out.push_str(FINALS.get(f as usize).copied().unwrap_or_default());
    } else if is_compat_jamo(c) {
        match split_compat(c) {
            Some(parts) => out.push_str(parts),
            None => out.push(c),
        }
    } else {
        out.extend(c.to_lowercase());
    }
}

/// The keystrokes of a whole string (see [`push_keys`]); whitespace is collapsed.
pub fn keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else if c.is_alphanumeric() || is_compat_jamo(c) {
            push_keys(c, &mut out);
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

/// Compound compatibility jamo typed as two keys.
fn split_compat(c: char) -> Option<&'static str> {
    Some(match c {
        'ㄳ' => "ㄱㅅ",
        'ㄵ' => "ㄴㅈ",
        'ㄶ' => "ㄴㅎ",
        'ㄺ' => "ㄹㄱ",
        'ㄻ' => "ㄹㅁ",
        'ㄼ' => "ㄹㅂ",
        'ㄽ' => "ㄹㅅ",
        'ㄾ' => "ㄹㅌ",
        'ㄿ' => "ㄹㅍ",
        'ㅀ' => "ㄹㅎ",
        'ㅄ' => "ㅂㅅ",
        'ㅘ' => "ㅗㅏ",
        'ㅙ' => "ㅗㅐ",
        'ㅚ' => "ㅗㅣ",
        'ㅝ' => "ㅜㅓ",
        'ㅞ' => "ㅜㅔ",
        'ㅟ' => "ㅜㅣ",
        'ㅢ' => "ㅡㅣ",
        _ => return None,
    })
}

/// Lower-cases and splits text into words: runs of letters, digits or jamo. Returns
/// each word with its byte range in `text`.
pub fn words(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        let inside = c.is_alphanumeric() || is_compat_jamo(c);
        match (inside, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len(), &text[s..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_of_a_name() {
        assert_eq!(chosung("방탄소년단"), "ㅂㅌㅅㄴㄷ");
        assert_eq!(chosung("아이유 IU"), "ㅇㅇㅇ");
        assert!(is_chosung_query("ㅂㅌㅅㄴㄷ"));
        assert!(!is_chosung_query("ㅂ탄"));
        assert!(!is_chosung_query(""));
    }

    #[test]
    fn mid_typing_is_a_key_prefix() {
        assert!(keys("방탄소년단").starts_with(&keys("방타")));
        assert!(keys("과천").starts_with(&keys("고")));
        assert!(keys("닭갈비").starts_with(&keys("달")));
        assert!(!keys("방탄").starts_with(&keys("반")));
        assert_eq!(keys("BTS  World"), "bts world");
    }

    #[test]
    fn words_split_on_punctuation() {
        let w: Vec<&str> = words("BTS: 월드투어, 2026!").iter().map(|w| w.2).collect();
        assert_eq!(w, ["BTS", "월드투어", "2026"]);
    }
}
