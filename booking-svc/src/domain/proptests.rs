//! Property tests of the domain parsers: no string makes one panic, what one accepts
//! parses again to itself (through `Display`/`as_str`), and what one refuses is an
//! `InvalidArgument` naming the request field, so the client gets a 400 that says
//! which field is wrong.

use proptest::prelude::*;

use super::*;

/// Any text, text near the accepted shapes, and text with controls in it.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,12}",
        "[ \t]{0,2}[0-9a-fA-F-]{30,40}[ \n]{0,2}",
        "[ ]{0,2}[a-zA-Z0-9._+-]{0,10}@[a-zA-Z0-9.-]{0,10}[ ]{0,2}",
        "[ ]{0,2}[A-Za-z]{0,4}[ ]{0,2}",
        "[\\x00-\\x20\\x7f-\\x9f]{0,3}[!-~]{0,8}[\\x00-\\x20\\x7f-\\x9f]{0,3}",
        "-?[0-9]{0,20}",
    ]
}

/// Whether `error` is a client error naming `field`.
fn names(error: &BookingError, field: &str) -> bool {
    matches!(error, BookingError::InvalidArgument { field: f, .. } if *f == field)
}

fn no_controls(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ids_round_trip_and_refusals_name_the_field(raw in any_text(), n in any::<u128>(), field in "[a-z][a-zA-Z]{0,10}") {
        let field: &'static str = Box::leak(field.into_boxed_str());
        // Every id a service hands out parses back to itself, however it is spaced.
        let id = EventId(Uuid::from_u128(n));
        prop_assert_eq!(EventId::parse(field, &id.to_string()).ok(), Some(id));
        prop_assert_eq!(EventId::parse(field, &format!(" {id}\n")).ok(), Some(id));
        prop_assert_eq!(EventId::parse(field, &id.to_string().to_uppercase()).ok(), Some(id));
        for result in [
            AccountId::parse(field, &raw).map(|i| i.to_string()),
            EventId::parse(field, &raw).map(|i| i.to_string()),
            SectionId::parse(field, &raw).map(|i| i.to_string()),
            SeatId::parse(field, &raw).map(|i| i.to_string()),
            HoldId::parse(field, &raw).map(|i| i.to_string()),
            BookingId::parse(field, &raw).map(|i| i.to_string()),
        ] {
            match result {
                Ok(text) => prop_assert_eq!(
                    BookingId::parse(field, &text).map(|i| i.to_string()).ok(),
                    Some(text)
                ),
                Err(error) => prop_assert!(names(&error, field), "{:?}: {}", raw, error),
            }
        }
    }

    #[test]
    fn an_ordinary_address_is_accepted_in_any_case_and_spacing(
        local in "[a-zA-Z0-9._+-]{1,12}",
        domain in "[a-zA-Z0-9-]{1,10}(\\.[a-zA-Z]{2,6}){1,2}",
        before in "[ \t]{0,2}",
        after in "[ \t\n]{0,2}",
    ) {
        let typed = format!("{before}{local}@{domain}{after}");
        let email = Email::parse(&typed);
        prop_assert!(email.is_ok(), "{:?}: {:?}", typed, email);
        let expected = format!("{local}@{domain}").to_lowercase();
        let email = email.unwrap();
        prop_assert_eq!(email.as_str(), expected.as_str());
    }

    #[test]
    fn email(raw in any_text()) {
        match Email::parse(&raw) {
            Ok(email) => {
                let again = Email::parse(email.as_str());
                prop_assert_eq!(again.as_ref().ok(), Some(&email), "{:?}", raw);
                let text = email.as_str();
                prop_assert_eq!(text.matches('@').count(), 1);
                prop_assert!(no_controls(text) && !text.chars().any(char::is_whitespace));
                prop_assert!(text.len() <= 254);
            }
            Err(error) => prop_assert!(names(&error, "email"), "{:?}: {}", raw, error),
        }
    }

    #[test]
    fn password(raw in prop_oneof![any_text(), "\\PC{6,10}", "[a-z]{120,130}"]) {
        match Password::parse(&raw) {
            Ok(password) => {
                // Taken as typed: never trimmed or changed.
                prop_assert_eq!(password.expose(), raw.as_str());
                prop_assert!((8..=128).contains(&raw.chars().count()) && no_controls(&raw));
                prop_assert!(!format!("{password:?}").contains(&raw), "a password is never printed");
            }
            Err(error) => prop_assert!(names(&error, "password"), "{:?}: {}", raw, error),
        }
    }

    #[test]
    fn text_fields(raw in any_text(), max in 1usize..16, field in "[a-z][a-zA-Z]{0,10}") {
        let field: &'static str = Box::leak(field.into_boxed_str());
        match text(field, &raw, max) {
            Ok(value) => {
                prop_assert_eq!(text(field, &value, max).ok(), Some(value.clone()));
                prop_assert!(!value.is_empty() && value.chars().count() <= max);
                prop_assert_eq!(value.trim(), value.as_str());
                prop_assert!(no_controls(&value));
                prop_assert!(raw.contains(&value));
            }
            Err(error) => prop_assert!(names(&error, field), "{:?}: {}", raw, error),
        }
        match long_text(field, &raw, max) {
            Ok(value) => {
                prop_assert_eq!(long_text(field, &value, max).ok(), Some(value.clone()));
                prop_assert!(value.chars().count() <= max);
                prop_assert!(value.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')));
                prop_assert!(raw.contains(&value));
            }
            Err(error) => prop_assert!(names(&error, field), "{:?}: {}", raw, error),
        }
        match storable(field, &raw, Lines::One) {
            Ok(()) => prop_assert!(no_controls(&raw)),
            Err(error) => prop_assert!(names(&error, field), "{:?}: {}", raw, error),
        }
    }

    #[test]
    fn currency(raw in any_text(), field in "[a-z][a-zA-Z]{0,10}") {
        let field: &'static str = Box::leak(field.into_boxed_str());
        match Currency::parse(field, &raw) {
            Ok(currency) => {
                prop_assert_eq!(Currency::parse(field, currency.as_str()).ok(), Some(currency.clone()));
                let code = currency.as_str();
                prop_assert!(code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()));
                prop_assert!(code == "KRW" || raw.contains(code));
            }
            Err(error) => prop_assert!(names(&error, field), "{:?}: {}", raw, error),
        }
    }

    #[test]
    fn idempotency_key(raw in prop_oneof![any_text(), "[!-~]{195,205}"]) {
        match IdempotencyKey::parse(&raw) {
            Ok(key) => {
                prop_assert_eq!(IdempotencyKey::parse(key.as_str()).ok(), Some(key.clone()));
                let text = key.as_str();
                prop_assert!((1..=200).contains(&text.len()) && text.chars().all(|c| c.is_ascii_graphic()));
            }
            Err(error) => prop_assert!(names(&error, "idempotencyKey"), "{:?}: {}", raw, error),
        }
    }

    #[test]
    fn card_token(raw in prop_oneof![any_text(), "[ ]{0,1}tok_[A-Za-z0-9_]{0,66}[ ]{0,1}"]) {
        match CardToken::parse(&raw) {
            Ok(token) => {
                prop_assert_eq!(CardToken::parse(token.expose()).ok(), Some(token.clone()));
                let rest = token.expose().strip_prefix("tok_").unwrap_or_default();
                prop_assert!((1..=64).contains(&rest.len()));
                prop_assert!(rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                let shown = format!("{:?}", token);
                prop_assert!(!shown.contains(token.expose()), "{}", shown);
            }
            Err(error) => prop_assert!(names(&error, "cardToken"), "{:?}: {}", raw, error),
        }
    }

    #[test]
    fn seat_selection(
        raw in prop::collection::vec(any_text(), 0..4),
        ids in prop::collection::vec(any::<u128>(), 0..70),
        duplicate in any::<bool>(),
    ) {
        if let Err(error) = SeatSelection::parse(&raw) {
            prop_assert!(names(&error, "seatIds"), "{:?}: {}", raw, error);
        }
        let mut values: Vec<String> = ids.iter().map(|n| Uuid::from_u128(*n).to_string()).collect();
        if duplicate && let Some(first) = values.first().cloned() {
            values.push(first);
        }
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let valid = !values.is_empty() && values.len() <= 64 && distinct.len() == values.len();
        match SeatSelection::parse(&values) {
            Ok(selection) => {
                prop_assert!(valid);
                let back: Vec<String> = selection.seats().iter().map(ToString::to_string).collect();
                prop_assert_eq!(back, values);
            }
            Err(error) => {
                prop_assert!(!valid);
                prop_assert!(names(&error, "seatIds"), "{}", error);
            }
        }
    }

    #[test]
    fn pages(raw in any_text(), n in any::<i64>(), size in any::<i32>(), default in 1i64..100, max in 1i64..1000) {
        if n >= 0 {
            prop_assert_eq!(page_offset(&n.to_string()).ok(), Some(n));
        }
        // A token is the decimal offset the previous page handed out, nothing else.
        let expected = if raw.is_empty() { Some(0) } else { raw.parse::<i64>().ok().filter(|n| *n >= 0) };
        match page_offset(&raw) {
            Ok(offset) => prop_assert_eq!(Some(offset), expected, "{:?}", raw),
            Err(error) => {
                prop_assert_eq!(expected, None, "{:?}", raw);
                prop_assert!(names(&error, "pageToken"), "{:?}: {}", raw, error);
            }
        }
        match page_size(size, default, max) {
            Ok(n) => {
                let fits = if size == 0 { n == default } else { n >= 1 && n <= max && n <= i64::from(size) };
                prop_assert!(fits, "{} of {} (default {}, max {})", n, size, default, max);
            }
            Err(error) => {
                prop_assert!(size < 0);
                prop_assert!(names(&error, "pageSize"), "{}", error);
            }
        }
    }

    #[test]
    fn stored_enums_round_trip(raw in any_text()) {
        for status in [BookingStatus::PendingPayment, BookingStatus::Confirmed, BookingStatus::Cancelling, BookingStatus::Cancelled] {
            prop_assert_eq!(status.as_str().parse::<BookingStatus>().ok(), Some(status));
        }
        for role in [Role::Buyer, Role::Seller, Role::Admin] {
            prop_assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        for method in [PaymentMethod::Wallet, PaymentMethod::Card] {
            prop_assert_eq!(method.as_str().parse::<PaymentMethod>().ok(), Some(method));
        }
        // Anything else is refused, and nothing panics.
        if let Ok(status) = raw.parse::<BookingStatus>() {
            prop_assert_eq!(status.as_str(), raw.as_str());
        }
        if let Ok(role) = raw.parse::<Role>() {
            prop_assert_eq!(role.as_str(), raw.as_str());
        }
        if let Ok(method) = raw.parse::<PaymentMethod>() {
            prop_assert_eq!(method.as_str(), raw.as_str());
        }
    }

    #[test]
    fn hold_selection(
        seats in prop::collection::vec(any::<u128>(), 0..3),
        quantity in prop_oneof![-2i32..70, any::<i32>()],
        section in prop_oneof![Just(String::new()), any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()), any_text()],
        price in prop::option::of((prop_oneof![-5i64..5, any::<i64>()], prop_oneof![Just(String::new()), Just("KRW".to_owned()), any_text()])),
    ) {
        let seat_ids: Vec<String> = seats.iter().map(|n| Uuid::from_u128(*n).to_string()).collect();
        let result = HoldSelection::parse(
            &seat_ids,
            quantity,
            &section,
            price.as_ref().map(|(amount, currency)| (*amount, currency.as_str())),
        );
        match result {
            // Named seats never come with best-available terms.
            Ok(HoldSelection::Seats(selection)) => {
                prop_assert_eq!(quantity, 0);
                prop_assert!(section.trim().is_empty() && price.is_none());
                prop_assert_eq!(selection.len(), seat_ids.len());
            }
            // A quantity never comes with seats, and is what was asked.
            Ok(HoldSelection::Best(best)) => {
                prop_assert!(seat_ids.is_empty());
                prop_assert_eq!(i64::from(best.quantity()), i64::from(quantity));
                prop_assert!((1..=MAX_SEATS_PER_HOLD as u32).contains(&best.quantity()));
                prop_assert_eq!(best.section().is_some(), !section.trim().is_empty());
                prop_assert!(best.max_price().is_none_or(|m| m.amount_minor >= 0));
                prop_assert!(!best.terms().contains('|'));
            }
            Err(error) => prop_assert!(
                ["seatIds", "quantity", "sectionId", "maxPrice", "maxPrice.amountMinor", "maxPrice.currency"]
                    .iter()
                    .any(|field| names(&error, field)),
                "{}", error
            ),
        }
    }

    #[test]
    fn second_factor_codes_parse_only_in_their_shapes(raw in any_text(), digits in "[0-9]{6}", typed in "[ ]{0,2}[a-zA-Z2-7]{16}[ ]{0,2}") {
        // A TOTP code is six ASCII digits, spaces around allowed; anything else names
        // the field.
        match TotpCode::parse("code", &raw) {
            Ok(code) => {
                prop_assert_eq!(code.expose().len(), 6);
                prop_assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(code.expose(), raw.trim());
            }
            Err(error) => prop_assert!(names(&error, "code"), "{}", error),
        }
        prop_assert_eq!(TotpCode::parse("code", &digits).map(|c| c.expose().to_owned()).ok(), Some(digits.clone()));
        // A recovery code parses in any case and spacing to one canonical form, which
        // its display form parses back to.
        match RecoveryCode::parse("recoveryCode", &raw) {
            Ok(code) => {
                prop_assert_eq!(code.canonical().len(), RECOVERY_CODE_LEN);
                prop_assert_eq!(RecoveryCode::parse("recoveryCode", &code.display()).ok(), Some(code));
            }
            Err(error) => prop_assert!(names(&error, "recoveryCode"), "{}", error),
        }
        let code = RecoveryCode::parse("recoveryCode", &typed).expect("a recovery code");
        prop_assert_eq!(code.canonical(), typed.trim().to_ascii_lowercase());
        // Both at once is refused, naming recoveryCode; neither is no second factor.
        prop_assert!(SecondFactor::parse(&digits, &typed).is_err());
        prop_assert_eq!(SecondFactor::parse(" ", "").ok(), Some(SecondFactor::None));
    }
}
