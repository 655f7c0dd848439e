//! Property tests of the Hangul functions: decomposition into keystrokes is undone by
//! composing the jamo again, chosung of any Hangul text is its initial consonants, and
//! no function panics or breaks its promises on arbitrary Unicode.

use proptest::prelude::*;

use super::*;

/// The syllable of initial `i`, medial `m` and final `f` (the Unicode formula).
fn compose(i: u32, m: u32, f: u32) -> char {
    char::from_u32(SYLLABLE_FIRST + (i * 21 + m) * 28 + f).expect("a Hangul syllable")
}

/// The one syllable typed by `keys`, if they type exactly one: the inverse of
/// [`push_keys`] on syllables. The initial is one key, the medial the longest vowel
/// keys that follow (a final is consonants only), the final the rest.
fn compose_keys(keys: &str) -> Option<char> {
    let first = keys.chars().next()?;
    let i = INITIALS.iter().position(|c| *c == first)?;
    let rest = &keys[first.len_utf8()..];
    let (m, medial) = MEDIALS
        .iter()
        .enumerate()
        .filter(|(_, m)| rest.starts_with(**m))
        .max_by_key(|(_, m)| m.len())?;
    let rest = &rest[medial.len()..];
    let f = FINALS.iter().position(|f| *f == rest)?;
    Some(compose(i as u32, m as u32, f as u32))
}

/// The keys of syllable (`i`, `m`, `f`) from Unicode's own order of the compatibility
/// jamo rather than this module's tables: the consonants ㄱ…ㅎ (U+3131…U+314E) without
/// the clusters are the initials, without ㄸ ㅃ ㅉ the finals; the vowels ㅏ…ㅣ
/// (U+314F…U+3163) are the medials. A compound jamo is typed as its parts.
fn oracle_keys(i: u32, m: u32, f: u32) -> String {
    const CLUSTERS: [u32; 11] = [
        0x3133, 0x3135, 0x3136, 0x313A, 0x313B, 0x313C, 0x313D, 0x313E, 0x313F, 0x3140, 0x3144,
    ];
    const NEVER_FINAL: [u32; 3] = [0x3138, 0x3143, 0x3149];
    let consonants = || (0x3131..=0x314E).filter_map(char::from_u32);
    let typed = |c: char| split_compat(c).map_or_else(|| c.to_string(), str::to_owned);
    let initial = consonants()
        .filter(|c| !CLUSTERS.contains(&u32::from(*c)))
        .nth(i as usize)
        .expect("19 initials");
    let medial = char::from_u32(0x314F + m).expect("21 medials");
    let mut keys = format!("{initial}{}", typed(medial));
    if f > 0 {
        let last = consonants()
            .filter(|c| !NEVER_FINAL.contains(&u32::from(*c)))
            .nth(f as usize - 1)
            .expect("27 finals");
        keys.push_str(&typed(last));
    }
    keys
}

/// [`compact`] by its definition: each whitespace run goes if a syllable is on both
/// sides of it (or nothing follows it), else it stays as it was.
fn compact_oracle(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let before = start.checked_sub(1).map(|b| chars[b]);
        let after = chars.get(i).copied();
        let between_syllables = before.is_some_and(is_syllable) && after.is_some_and(is_syllable);
        if after.is_some() && !between_syllables {
            out.extend(&chars[start..i]);
        }
    }
    out
}

fn syllable() -> impl Strategy<Value = char> {
    (SYLLABLE_FIRST..=SYLLABLE_LAST).prop_map(|c| char::from_u32(c).expect("in range"))
}

fn hangul_word() -> impl Strategy<Value = String> {
    prop::collection::vec(syllable(), 0..12).prop_map(|cs| cs.into_iter().collect())
}

/// Text a title or a query is made of: Hangul syllables and jamo, Latin letters, digits,
/// spaces and punctuation, and now and then anything at all.
fn mixed_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => syllable().prop_map(String::from),
        2 => (0x3131u32..=0x3163).prop_map(|c| char::from_u32(c).map(String::from).unwrap_or_default()),
        2 => "[a-zA-Z0-9]{1,4}",
        2 => "[ \t\n\u{3000}]{1,3}",
        1 => "[.,:!?()'\"-]",
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), mixed_text()]
}

/// Every syllable, not a sample: there are only 11,172.
#[test]
fn every_syllable_decomposes_into_keys_that_compose_it_again() {
    for c in (SYLLABLE_FIRST..=SYLLABLE_LAST).filter_map(char::from_u32) {
        let mut keys = String::new();
        push_keys(c, &mut keys);
        assert_eq!(compose_keys(&keys), Some(c), "{c} typed as {keys}");
        let offset = u32::from(c) - SYLLABLE_FIRST;
        let (i, m, f) = (offset / (21 * 28), (offset / 28) % 21, offset % 28);
        assert_eq!(keys, oracle_keys(i, m, f), "{c}");
        assert!(keys.chars().all(is_compat_jamo), "{c} typed as {keys}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn composing_the_jamo_of_a_syllable_gives_the_syllable(i in 0u32..19, m in 0u32..21, f in 0u32..28) {
        let c = compose(i, m, f);
        prop_assert!(is_syllable(c) && is_hangul(c));
        prop_assert_eq!(initial(c), Some(INITIALS[i as usize]));
        let keys = keys(&c.to_string());
        prop_assert_eq!(&keys, &oracle_keys(i, m, f));
        prop_assert_eq!(compose_keys(&keys), Some(c));
        // Typing a syllable passes through the syllable without its final.
        prop_assert!(keys.starts_with(&self::keys(&compose(i, m, 0).to_string())));
    }

    #[test]
    fn chosung_of_hangul_is_its_initial_consonants(word in hangul_word()) {
        let initials: String = word
            .chars()
            .map(|c| INITIALS[((u32::from(c) - SYLLABLE_FIRST) / (21 * 28)) as usize])
            .collect();
        let chosung = chosung(&word);
        prop_assert_eq!(&chosung, &initials);
        prop_assert_eq!(is_chosung_query(&chosung), !word.is_empty());
        // The keys of a word start with the key of its first initial.
        if let Some(first) = chosung.chars().next() {
            prop_assert!(keys(&word).starts_with(first));
        }
    }

    #[test]
    fn chosung_drops_everything_but_syllables(text in any_text()) {
        let syllables: String = text.chars().filter(|c| is_syllable(*c)).collect();
        let chosung = chosung(&text);
        prop_assert_eq!(&chosung, &self::chosung(&syllables));
        prop_assert_eq!(chosung.chars().count(), syllables.chars().count());
        prop_assert!(chosung.chars().all(is_consonant));
    }

    /// The functions a query and a title go through never panic on arbitrary Unicode,
    /// and keep their promises.
    #[test]
    fn text_functions_keep_their_promises_on_any_text(text in any_text()) {
        let keys = keys(&text);
        prop_assert_eq!(keys.trim(), keys.as_str(), "no space at either end");
        prop_assert!(!keys.contains("  "), "whitespace is collapsed: {:?}", keys);
        prop_assert!(!keys.chars().any(is_syllable), "syllables become jamo: {:?}", keys);
        prop_assert!(!keys.chars().any(|c| split_compat(c).is_some()), "compound jamo are split: {:?}", keys);

        let mut end = 0;
        for (start, stop, word) in words(&text) {
            prop_assert!(start >= end && start < stop);
            prop_assert_eq!(&text[start..stop], word);
            prop_assert!(word.chars().all(|c| c.is_alphanumeric() || is_compat_jamo(c)));
            end = stop;
            for stem in particle_stems(word) {
                prop_assert!(word.starts_with(stem) && stem.len() < word.len(), "{:?} of {:?}", stem, word);
            }
        }

        prop_assert_eq!(compact(&text), compact_oracle(&text), "{:?}", text);
        let _ = is_chosung_query(&text);
    }

    /// Typing is incremental: what the first characters of a text type is a prefix of
    /// what the whole text types, so a suggestion keeps matching as the user types on.
    #[test]
    fn keys_of_a_prefix_are_a_prefix_of_the_keys(text in any_text(), cut in any::<prop::sample::Index>()) {
        let chars: Vec<char> = text.chars().collect();
        let n = if chars.is_empty() { 0 } else { cut.index(chars.len() + 1) };
        let prefix: String = chars[..n].iter().collect();
        let (short, long) = (keys(&prefix), keys(&text));
        prop_assert!(long.starts_with(&short), "{:?} types {:?}, {:?} types {:?}", prefix, short, text, long);
    }
}
