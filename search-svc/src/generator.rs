//! A deterministic catalog generator for the benchmark: realistic Korean and English
//! concert, festival, musical, classical and sports events with artists, venues,
//! categories and descriptions, and a mixed query load over them. The same seed gives
//! the same catalog and the same queries.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::domain::EventDoc;
use crate::korean;

/// (Korean name, Latin name) of performers; an empty Korean name means Latin only.
const ARTISTS: &[(&str, &str)] = &[
    ("방탄소년단", "BTS"),
    ("아이유", "IU"),
    ("블랙핑크", "BLACKPINK"),
    ("세븐틴", "SEVENTEEN"),
    ("뉴진스", "NewJeans"),
    ("임영웅", "Lim Young-woong"),
    ("성시경", "Sung Si-kyung"),
    ("잔나비", "Jannabi"),
    ("검정치마", "The Black Skirts"),
    ("혁오", "HYUKOH"),
    ("데이식스", "DAY6"),
    ("에스파", "aespa"),
    ("트와이스", "TWICE"),
    ("악뮤", "AKMU"),
    ("싸이", "PSY"),
    ("이승환", "Lee Seung-hwan"),
    ("폴킴", "Paul Kim"),
    ("자우림", "Jaurim"),
    ("장범준", "Jang Beom-june"),
    ("르세라핌", "LE SSERAFIM"),
    ("스트레이 키즈", "Stray Kids"),
    ("엔시티 드림", "NCT DREAM"),
    ("태연", "Taeyeon"),
    ("백예린", "Yerin Baek"),
    ("", "Coldplay"),
    ("", "Imagine Dragons"),
    ("", "Ed Sheeran"),
    ("", "Taylor Swift"),
    ("", "Bruno Mars"),
    ("", "Metallica"),
    ("", "Oasis"),
    ("", "Radiohead"),
    ("", "Billie Eilish"),
    ("", "Maroon 5"),
    ("", "The Weeknd"),
    ("", "Dua Lipa"),
    ("", "Arctic Monkeys"),
    ("", "Muse"),
];

const TOURS: &[&str] = &[
    "월드투어",
    "전국투어",
    "콘서트",
    "단독공연",
    "앙코르 콘서트",
    "쇼케이스",
    "팬미팅",
    "World Tour",
    "Asia Tour",
    "Live",
    "Encore",
    "Fan Meeting",
];

const MUSICALS: &[&str] = &[
    "오페라의 유령",
    "레미제라블",
    "위키드",
    "시카고",
    "맘마미아",
    "지킬앤하이드",
    "노트르담 드 파리",
    "캣츠",
    "엘리자벳",
    "모차르트!",
    "The Phantom of the Opera",
    "Les Misérables",
    "Wicked",
    "Hamilton",
];

const CLASSICAL: &[&str] = &[
    "조성진 피아노 리사이틀",
    "임윤찬 피아노 독주회",
    "서울시립교향악단 정기공연",
    "KBS교향악단 마스터즈 시리즈",
    "베를린 필하모닉 내한공연",
    "빈 필하모닉 오케스트라",
    "정경화 바이올린 리사이틀",
    "Seoul Philharmonic: Mahler Symphony No. 5",
    "Chamber Music Night",
];

const FESTIVALS: &[&str] = &[
    "서울재즈페스티벌",
    "부산 록 페스티벌",
    "펜타포트 락 페스티벌",
    "그린플러그드 서울",
    "워터밤 서울",
    "뷰티풀 민트 라이프",
    "Ultra Korea",
    "Seoul Jazz Festival",
    "DMZ Peace Train Music Festival",
    "한강 여름 축제",
];

const TEAMS: &[&str] = &[
    "LG 트윈스",
    "두산 베어스",
    "SSG 랜더스",
    "KIA 타이거즈",
    "롯데 자이언츠",
    "삼성 라이온즈",
    "한화 이글스",
    "FC서울",
    "울산 HD",
    "전북 현대",
];

/// (venue, city in Korean, city in English)
const VENUES: &[(&str, &str, &str)] = &[
    ("잠실종합운동장 주경기장", "서울", "Seoul"),
    ("올림픽공원 KSPO DOME", "서울", "Seoul"),
    ("고척스카이돔", "서울", "Seoul"),
    ("인스파이어 아레나", "인천", "Incheon"),
    ("블루스퀘어 신한카드홀", "서울", "Seoul"),
    ("세종문화회관 대극장", "서울", "Seoul"),
    ("예술의전당 콘서트홀", "서울", "Seoul"),
    ("롯데콘서트홀", "서울", "Seoul"),
    ("샤롯데씨어터", "서울", "Seoul"),
    ("충무아트센터 대극장", "서울", "Seoul"),
    ("부산 벡스코 오디토리움", "부산", "Busan"),
    ("부산 사직야구장", "부산", "Busan"),
    ("대구 엑스코", "대구", "Daegu"),
    ("광주 김대중컨벤션센터", "광주", "Gwangju"),
    ("인천 문학경기장", "인천", "Incheon"),
    ("수원 KT위즈파크", "수원", "Suwon"),
    ("난지한강공원", "서울", "Seoul"),
    ("Yes24 Live Hall", "서울", "Seoul"),
];

const PHRASES_KO: &[&str] = &[
    "티켓 오픈 당일 매진이 예상됩니다.",
    "전석 지정석으로 운영됩니다.",
    "공연 시간은 약 150분이며 인터미션이 있습니다.",
    "만 7세 이상 관람 가능합니다.",
    "특별한 무대와 함께하는 잊지 못할 밤.",
    "팬들과 함께하는 최고의 라이브 무대.",
    "현장 MD 부스가 운영됩니다.",
    "우천 시에도 공연은 진행됩니다.",
];

const PHRASES_EN: &[&str] = &[
    "Reserved seating only.",
    "Running time is about two hours.",
    "An unforgettable night of live music.",
    "Merchandise booth opens three hours before the show.",
    "Presented with full band and special guests.",
];

/// A deterministic catalog of `n` events from `seed`.
pub fn catalog(seed: u64, n: usize) -> Vec<EventDoc> {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH);
    (0..n).map(|i| event(&mut rng, i, base)).collect()
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    // Every list above is non-empty.
    items.choose(rng).unwrap_or(&items[0])
}

fn event(rng: &mut StdRng, i: usize, base: DateTime<Utc>) -> EventDoc {
    let (venue, city_ko, city_en) = *pick(rng, VENUES);
    let year = 2026 + rng.random_range(0..2);
    let kind = rng.random_range(0..100);
    let (title, category, subject) = if kind < 55 {
        let (ko, en) = *pick(rng, ARTISTS);
        let tour = *pick(rng, TOURS);
        let latin_tour = tour.is_ascii();
        let name = if ko.is_empty() || (latin_tour && rng.random_bool(0.7)) {
            en.to_owned()
        } else if rng.random_bool(0.3) {
            format!("{ko}({en})")
        } else {
            ko.to_owned()
        };
        let city = if latin_tour { city_en } else { city_ko };
        let category = if tour.contains("팬미팅") || tour.contains("Fan") {
            "FANMEETING"
        } else {
            "CONCERT"
        };
        (
            format!("{name} {year} {tour} - {city}"),
            category,
            format!("{ko} {en}"),
        )
    } else if kind < 70 {
        let title = *pick(rng, MUSICALS);
        (
            format!("뮤지컬 〈{title}〉 {year} {city_ko}"),
            "MUSICAL",
            title.to_owned(),
        )
    } else if kind < 80 {
        let title = *pick(rng, CLASSICAL);
        (format!("{title} {year}"), "CLASSICAL", title.to_owned())
    } else if kind < 90 {
        let title = *pick(rng, FESTIVALS);
        (format!("{title} {year}"), "FESTIVAL", title.to_owned())
    } else {
        let home = *pick(rng, TEAMS);
        let away = *pick(rng, TEAMS);
        (
            format!("{home} vs {away}"),
            "SPORTS",
            format!("{home} {away}"),
        )
    };
    let mut description = format!("{subject} — {venue}, {city_ko} ({city_en}). ");
    for _ in 0..rng.random_range(1..4) {
        description.push_str(pick::<&str>(rng, PHRASES_KO));
        description.push(' ');
    }
    description.push_str(pick::<&str>(rng, PHRASES_EN));
    let starts_at = base
        + Duration::days(i64::from(year - 2026) * 365 + rng.random_range(0..365))
        + Duration::hours(rng.random_range(12..21));
    let sale_starts_at = starts_at - Duration::days(rng.random_range(14..60));
    EventDoc {
        id: uuid::Uuid::from_u128(rng.random::<u128>() ^ i as u128).to_string(),
        title,
        category: category.to_owned(),
        description,
        venue: venue.to_owned(),
        starts_at,
        sale_starts_at,
        sale_ends_at: starts_at - Duration::hours(1),
    }
}

/// A deterministic mixed query load: Korean full and partial words, chosung, English
/// (some with a typo), synonyms, venues, and mixed Korean/English.
pub fn queries(seed: u64, n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    (0..n)
        .map(|_| {
            let (ko, en) = *pick(&mut rng, ARTISTS);
            let ko = if ko.is_empty() { "콘서트" } else { ko };
            let (venue, city_ko, _) = *pick(&mut rng, VENUES);
            match rng.random_range(0..9) {
                0 => ko.to_owned(),
                1 => ko.chars().take(2).collect(),
                2 => korean::chosung(ko),
                3 => en.to_lowercase(),
                4 => typo(&mut rng, en),
                5 => (*pick(
                    &mut rng,
                    &["축제", "페스티벌", "festival", "뮤지컬", "재즈"],
                ))
                .to_owned(),
                6 => venue.split_whitespace().next().unwrap_or(venue).to_owned(),
                7 => format!("{en} {city_ko}"),
                _ => (*pick(&mut rng, MUSICALS)).to_owned(),
            }
        })
        .collect()
}

/// `word` with two neighbouring letters swapped (when it is long enough).
fn typo(rng: &mut StdRng, word: &str) -> String {
    let mut chars: Vec<char> = word.to_lowercase().chars().collect();
    if chars.len() >= 5 {
        let at = rng.random_range(1..chars.len() - 1);
        chars.swap(at, at + 1);
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_catalog() {
        let a = catalog(7, 50);
        assert_eq!(a, catalog(7, 50));
        assert_ne!(a, catalog(8, 50));
        assert_eq!(queries(7, 20), queries(7, 20));
        let ids: std::collections::HashSet<_> = a.iter().map(|e| &e.id).collect();
        assert_eq!(ids.len(), 50);
    }
}
