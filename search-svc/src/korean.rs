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

/// What a particle may follow: some come in pairs chosen by whether the syllable
/// before ends in a consonant (을/를, 이/가, 은/는, 과/와, 으로/로).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follows {
    Any,
    Consonant,
    Vowel,
    /// 으로: a final consonant other than ㄹ.
    ConsonantNotRieul,
    /// 로: a vowel or ㄹ.
    VowelOrRieul,
}

/// Common particles and particle pairs a query word may end in, longest first.
const PARTICLES: [(&str, Follows); 36] = [
    ("으로는", Follows::ConsonantNotRieul),
    ("으로도", Follows::ConsonantNotRieul),
    ("에서는", Follows::Any),
    ("에서도", Follows::Any),
    ("에서의", Follows::Any),
    ("에게는", Follows::Any),
    ("에게서", Follows::Any),
    ("한테서", Follows::Any),
    ("까지는", Follows::Any),
    ("부터는", Follows::Any),
    ("으로", Follows::ConsonantNotRieul),
    ("로는", Follows::VowelOrRieul),
    ("로도", Follows::VowelOrRieul),
    ("에서", Follows::Any),
    ("에게", Follows::Any),
    ("한테", Follows::Any),
    ("까지", Follows::Any),
    ("부터", Follows::Any),
    ("처럼", Follows::Any),
    ("보다", Follows::Any),
    ("에는", Follows::Any),
    ("에도", Follows::Any),
    ("이랑", Follows::Consonant),
    ("의", Follows::Any),
    ("에", Follows::Any),
    ("도", Follows::Any),
    ("만", Follows::Any),
    ("로", Follows::VowelOrRieul),
    ("을", Follows::Consonant),
    ("를", Follows::Vowel),
    ("이", Follows::Consonant),
    ("가", Follows::Vowel),
    ("은", Follows::Consonant),
    ("는", Follows::Vowel),
    ("과", Follows::Consonant),
    ("와", Follows::Vowel),
];

/// The final consonant index of a syllable (0: none), or `None` for anything else.
fn final_of(c: char) -> Option<u32> {
    is_syllable(c).then(|| (u32::from(c) - SYLLABLE_FIRST) % 28)
}

/// ㄹ's index among the finals.
const FINAL_RIEUL: u32 = 8;

/// The stems of `word` without a particle it may end in (아이유의 → 아이유, 잠실에서 →
/// 잠실, 뮤지컬을 → 뮤지컬, bts의 → bts), longest particle first, for a query to try
/// as a weaker alternative; a particle that ends a longer one already stripped is not
/// tried again (부산으로 → 부산, not 부산으). A stem keeps at least two Hangul syllables (or two Latin
/// letters or digits), and a paired particle must fit the syllable before it
/// (어린이 → 어린, but 사과 is left alone).
pub fn particle_stems(word: &str) -> Vec<&str> {
    let mut stems: Vec<&str> = Vec::new();
    let mut matched: Vec<&str> = Vec::new();
    for (particle, follows) in PARTICLES {
        // 부산으로 ends in 로 too, but 부산으 is no stem.
        if matched.iter().any(|m| m.ends_with(particle)) {
            continue;
        }
        let Some(stem) = word.strip_suffix(particle) else {
            continue;
        };
        let Some(last) = stem.chars().next_back() else {
            continue;
        };
        let fits = match final_of(last) {
            Some(final_consonant) => {
                let syllables = stem.chars().rev().take_while(|c| is_syllable(*c)).count();
                syllables >= 2
                    && match follows {
                        Follows::Any => true,
                        Follows::Consonant => final_consonant != 0,
                        Follows::Vowel => final_consonant == 0,
                        Follows::ConsonantNotRieul => {
                            final_consonant != 0 && final_consonant != FINAL_RIEUL
                        }
                        Follows::VowelOrRieul => {
                            final_consonant == 0 || final_consonant == FINAL_RIEUL
                        }
                    }
            }
            // A Latin name or a number: how it is read is unknown, so any particle fits.
            None => last.is_alphanumeric() && !is_hangul(last) && stem.chars().count() >= 2,
        };
        if fits {
            matched.push(particle);
            if !stems.contains(&stem) {
                stems.push(stem);
            }
        }
    }
    stems
}

/// `text` with the spaces between Hangul syllables removed (서울 재즈 페스티벌 2026 →
/// 서울재즈페스티벌 2026), so that its bigrams also run across word boundaries.
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut spaces = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            spaces.push(c);
            continue;
        }
        if !spaces.is_empty() {
            let joins = is_syllable(c) && out.chars().next_back().is_some_and(is_syllable);
            if !joins {
                out.push_str(&spaces);
            }
            spaces.clear();
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod proptests;

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

    #[test]
    fn particles_are_stripped_only_where_they_fit() {
        assert_eq!(particle_stems("아이유의"), ["아이유"]);
        assert_eq!(particle_stems("잠실에서"), ["잠실"]);
        assert_eq!(particle_stems("뮤지컬을"), ["뮤지컬"]);
        assert_eq!(particle_stems("부산으로"), ["부산"]);
        assert_eq!(particle_stems("서울로"), ["서울"]);
        assert_eq!(particle_stems("블랙핑크가"), ["블랙핑크"]);
        assert_eq!(particle_stems("피아노와"), ["피아노"]);
        assert_eq!(particle_stems("임영웅과"), ["임영웅"]);
        assert_eq!(particle_stems("어린이"), ["어린"]);
        assert_eq!(particle_stems("공연에서는"), ["공연"]);
        assert_eq!(particle_stems("bts의"), ["bts"]);
        // Too short a stem, or a particle that does not fit the syllable before it.
        assert!(particle_stems("나의").is_empty());
        assert!(particle_stems("사과").is_empty());
        assert!(particle_stems("뮤지컬를").is_empty());
        assert!(particle_stems("부산로").is_empty());
        assert!(particle_stems("피아노과").is_empty());
        assert!(particle_stems("방탄소년단").is_empty());
    }

    #[test]
    fn compact_joins_hangul_words_only() {
        assert_eq!(compact("서울 재즈 페스티벌 2026"), "서울재즈페스티벌 2026");
        assert_eq!(
            compact("LG 트윈스 vs 두산  베어스"),
            "LG 트윈스 vs 두산베어스"
        );
        assert_eq!(compact("Imagine Dragons"), "Imagine Dragons");
    }
}
