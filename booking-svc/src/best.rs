//! Best available: the block of adjacent seats a group gets when its hold asks for a
//! quantity instead of naming seats. Pure functions over the event's layout and which
//! of its seats are available; [`crate::bookings::Bookings::hold`] reads the statuses,
//! one section at a time, and holds the block chosen with the ordinary all-or-nothing
//! hold script.
//!
//! **Best** is the seller's layout, in the order the seller listed it when creating
//! the event:
//! 1. sections in the order listed: the first is the best;
//! 2. within a section, rows in the order listed: the first is nearest the stage;
//! 3. within a row, the block whose centre is nearest the row's centre, on the seats'
//!    `x` coordinates (the centre of a block or a row is the midpoint of its leftmost
//!    and rightmost seat); a tie goes to the left (the smaller `x`, then the seat
//!    listed first). A layout without coordinates (every `x` equal) fills each row
//!    from the seat listed first.
//!
//! A block is `quantity` seats of one row listed one after another, all available:
//! the seats of a row are adjacent in the order the seller listed them.
//!
//! **Stranding**: a block strands a seat when, once taken, it leaves a single
//! available seat between itself and an unavailable seat (held or sold) or the end of
//! the row. A block that strands no seat is preferred over every block that strands
//! one, whatever their places; within each kind, the best comes first. A block that
//! strands is still given when no other exists.

use std::cmp::Ordering;
use std::ops::Range;

use crate::catalog::{SeatInfo, SectionInfo};

/// One row of a layout: seats listed one after another with the same section and row
/// label, as their positions in `EventInfo::seats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The section's position in `EventInfo::sections`.
    pub section: usize,
    pub seats: Range<usize>,
}

/// The rows of `seats` (an event's seats in layout order), in the order listed.
pub fn rows(seats: &[SeatInfo]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for (i, seat) in seats.iter().enumerate() {
        match rows.last_mut() {
            Some(row)
                if row.section == seat.section
                    && row.seats.end == i
                    && seats[row.seats.start].row == seat.row =>
            {
                row.seats.end = i + 1;
            }
            _ => rows.push(Row {
                section: seat.section,
                seats: i..i + 1,
            }),
        }
    }
    rows
}

/// What a best-available request narrows the search to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// How many adjacent seats.
    pub quantity: usize,
    /// Only this section (its position in `EventInfo::sections`).
    pub section: Option<usize>,
    /// Only sections whose seats cost at most this (minor units).
    pub max_price: Option<i64>,
}

/// The rows a request may take its block from, grouped by section, the best section
/// first and each section's rows in order. Rows shorter than the quantity are left
/// out, and so are sections left without rows, so nobody reads their statuses.
pub fn eligible(sections: &[SectionInfo], seats: &[SeatInfo], filter: &Filter) -> Vec<Vec<Row>> {
    let rows = rows(seats);
    sections
        .iter()
        .enumerate()
        .filter(|(i, section)| {
            filter.section.is_none_or(|only| only == *i)
                && filter
                    .max_price
                    .is_none_or(|max| section.price.amount_minor <= max)
        })
        .map(|(i, _)| {
            rows.iter()
                .filter(|row| row.section == i && row.seats.len() >= filter.quantity)
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|rows| !rows.is_empty())
        .collect()
}

/// A block of adjacent available seats, as positions in `EventInfo::seats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub seats: Range<usize>,
    /// Taking it leaves a single available seat stranded.
    pub strands: bool,
}

/// A block with what orders it within its row.
#[derive(Debug, Clone)]
struct Candidate {
    block: Block,
    /// From the block's centre to the row's centre.
    distance: f64,
    centre: f64,
}

impl Candidate {
    /// Nearer the row's centre first, then further left, then listed first.
    fn order(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.centre.total_cmp(&other.centre))
            .then(self.block.seats.start.cmp(&other.block.seats.start))
    }
}

/// The leftmost and rightmost `x` of `seats`.
fn span<'a>(seats: impl IntoIterator<Item = &'a SeatInfo>) -> (f64, f64) {
    seats
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), seat| {
            (lo.min(seat.x), hi.max(seat.x))
        })
}

fn midpoint((lo, hi): (f64, f64)) -> f64 {
    lo / 2.0 + hi / 2.0
}

/// The blocks of `quantity` in `row`, best first: those that strand no seat, and those
/// that do. `free[i]` says whether seat `i` is available (a position past its end is
/// not).
fn blocks_in_row(
    row: &Row,
    seats: &[SeatInfo],
    free: &[bool],
    quantity: usize,
) -> (Vec<Block>, Vec<Block>) {
    let (mut clean, mut stranding): (Vec<Candidate>, Vec<Candidate>) = (Vec::new(), Vec::new());
    let Some(row_seats) = seats.get(row.seats.clone()) else {
        return (Vec::new(), Vec::new());
    };
    if quantity == 0 || row_seats.len() < quantity {
        return (Vec::new(), Vec::new());
    }
    let middle = midpoint(span(row_seats));
    let available = |i: usize| row.seats.contains(&i) && free.get(i).copied().unwrap_or(false);
    // A single available seat at `i`, with `beyond` (the seat on its far side) not
    // available or past the row's end.
    let lone = |i: Option<usize>, beyond: Option<usize>| {
        i.is_some_and(available) && !beyond.is_some_and(available)
    };
    for start in row.seats.start..=row.seats.end - quantity {
        let block = start..start + quantity;
        if !block.clone().all(available) {
            continue;
        }
        let strands = lone(start.checked_sub(1), start.checked_sub(2))
            || lone(Some(block.end), Some(block.end + 1));
        let centre = midpoint(span(&seats[block.clone()]));
        let candidate = Candidate {
            block: Block {
                seats: block,
                strands,
            },
            distance: (centre - middle).abs(),
            centre,
        };
        if strands {
            stranding.push(candidate);
        } else {
            clean.push(candidate);
        }
    }
    let ordered = |mut candidates: Vec<Candidate>| {
        candidates.sort_by(Candidate::order);
        candidates.into_iter().map(|c| c.block).collect()
    };
    (ordered(clean), ordered(stranding))
}

/// At most this many candidate blocks go to one hold script, which holds the first
/// whose seats are all still free: enough that a crowd choosing from the same statuses
/// does not all want the same seats.
pub const CANDIDATES: usize = 16;

/// The choice made section by section, best section first, so the caller reads the
/// statuses of no more sections than it needs: the blocks that strand no seat in best
/// order, then (if there are too few of them anywhere) those that strand one.
#[derive(Debug, Clone)]
pub struct Search {
    quantity: usize,
    limit: usize,
    clean: Vec<Block>,
    stranding: Vec<Block>,
}

impl Search {
    /// A search for blocks of `quantity` that keeps the best `limit`.
    pub fn new(quantity: usize, limit: usize) -> Self {
        Self {
            quantity,
            limit,
            clean: Vec::new(),
            stranding: Vec::new(),
        }
    }

    /// Looks at the rows of the next section (in order). True once `limit` blocks that
    /// strand no seat are known: no later section can come before them.
    pub fn look(&mut self, rows: &[Row], seats: &[SeatInfo], free: &[bool]) -> bool {
        for row in rows {
            let (clean, stranding) = blocks_in_row(row, seats, free, self.quantity);
            self.clean.extend(clean);
            if self.clean.len() >= self.limit {
                self.clean.truncate(self.limit);
                return true;
            }
            let room = self.limit - self.stranding.len().min(self.limit);
            self.stranding.extend(stranding.into_iter().take(room));
        }
        false
    }

    /// The candidates, best first: every block found that strands no seat, then those
    /// that strand one, at most `limit` in all. Empty: no block at all.
    pub fn finish(self) -> Vec<Block> {
        let mut candidates = self.clean;
        candidates.extend(self.stranding);
        candidates.truncate(self.limit);
        candidates
    }
}

/// The best `limit` blocks of `quantity` among `sections` (as [`eligible`] groups
/// them), best first, every status known at once: what [`Search`] arrives at.
pub fn candidates(
    sections: &[Vec<Row>],
    seats: &[SeatInfo],
    free: &[bool],
    quantity: usize,
    limit: usize,
) -> Vec<Block> {
    let mut search = Search::new(quantity, limit);
    for rows in sections {
        if search.look(rows, seats, free) {
            break;
        }
    }
    search.finish()
}

/// The best block of `quantity` among `sections`, if there is one.
pub fn choose(
    sections: &[Vec<Row>],
    seats: &[SeatInfo],
    free: &[bool],
    quantity: usize,
) -> Option<Block> {
    candidates(sections, seats, free, quantity, 1)
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::{Currency, Money, SeatId, SectionId};

    /// Seats of rows given as (section, row label, x of each seat), in that order.
    fn layout(rows: &[(usize, &str, &[f64])]) -> Vec<SeatInfo> {
        rows.iter()
            .flat_map(|(section, label, xs)| {
                xs.iter().enumerate().map(move |(n, x)| SeatInfo {
                    id: SeatId(Uuid::now_v7()),
                    section: *section,
                    row: (*label).to_owned(),
                    number: (n + 1).to_string(),
                    x: *x,
                    y: 0.0,
                })
            })
            .collect()
    }

    fn sections(prices: &[i64]) -> Vec<SectionInfo> {
        prices
            .iter()
            .enumerate()
            .map(|(i, price)| SectionInfo {
                id: SectionId(Uuid::now_v7()),
                name: format!("S{i}"),
                price: Money {
                    amount_minor: *price,
                    currency: Currency::parse("currency", "KRW").expect("currency"),
                },
                seat_count: 0,
            })
            .collect()
    }

    /// Availability from a picture of the seats: `.` available, `x` held or sold.
    fn free(picture: &str) -> Vec<bool> {
        picture
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c == '.')
            .collect()
    }

    fn xs(n: usize) -> Vec<f64> {
        (1..=n).map(|x| x as f64).collect()
    }

    /// The block `choose` gives for `quantity` over every section of `seats`.
    fn pick(seats: &[SeatInfo], prices: &[i64], free: &[bool], quantity: usize) -> Option<Block> {
        let filter = Filter {
            quantity,
            section: None,
            max_price: None,
        };
        choose(
            &eligible(&sections(prices), seats, &filter),
            seats,
            free,
            quantity,
        )
    }

    fn clean(seats: Range<usize>) -> Option<Block> {
        Some(Block {
            seats,
            strands: false,
        })
    }

    #[test]
    fn rows_are_runs_of_one_section_and_label() {
        let seats = layout(&[
            (0, "A", &[1.0, 2.0]),
            (0, "B", &[1.0]),
            (1, "B", &[1.0, 2.0, 3.0]),
            (1, "C", &[1.0]),
        ]);
        let rows = rows(&seats);
        assert_eq!(
            rows,
            vec![
                Row {
                    section: 0,
                    seats: 0..2
                },
                Row {
                    section: 0,
                    seats: 2..3
                },
                Row {
                    section: 1,
                    seats: 3..6
                },
                Row {
                    section: 1,
                    seats: 6..7
                },
            ]
        );
    }

    #[test]
    fn the_first_section_and_row_listed_come_first() {
        let seats = layout(&[(0, "A", &xs(4)), (0, "B", &xs(4)), (1, "A", &xs(4))]);
        // x 1..4: the centred pair 2-3 would strand both ends; 1-2 and 3-4 tie, left.
        assert_eq!(
            pick(&seats, &[10, 20], &free(".... .... ...."), 2),
            clean(0..2)
        );
        // Row A full: row B, not the next section.
        assert_eq!(
            pick(&seats, &[10, 20], &free("xxxx .... ...."), 2),
            clean(4..6)
        );
        // Section 0 full: section 1.
        assert_eq!(
            pick(&seats, &[10, 20], &free("xxxx xxxx ...."), 2),
            clean(8..10)
        );
    }

    #[test]
    fn within_a_row_the_block_nearest_the_centre_ties_to_the_left() {
        // Eight seats at x 1..8, centre 4.5: the pair 4-5 is centred exactly.
        let seats = layout(&[(0, "A", &xs(8))]);
        assert_eq!(pick(&seats, &[1], &free("........"), 2), clean(3..5));
        // Three seats: 3-5 and 4-6 are both half a seat off; the left one wins.
        assert_eq!(pick(&seats, &[1], &free("........"), 3), clean(2..5));
        // Listed right to left (x 8..1), "left" is still the smaller x.
        let reversed: Vec<f64> = xs(8).into_iter().rev().collect();
        let seats = layout(&[(0, "A", &reversed)]);
        assert_eq!(pick(&seats, &[1], &free("........"), 3), clean(3..6));
        // Uneven spacing: the centre is the midpoint of the row's extremes (x 0..200,
        // centre 100), not its middle seat.
        let seats = layout(&[(0, "A", &[0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 200.0])]);
        assert_eq!(pick(&seats, &[1], &free("........"), 2), clean(6..8));
        // Without coordinates every block is as central as any: the first seats listed.
        let seats = layout(&[(0, "A", &[0.0; 6])]);
        assert_eq!(pick(&seats, &[1], &free("......"), 2), clean(0..2));
    }

    #[test]
    fn a_block_never_strands_a_single_seat_when_another_block_exists() {
        // x 1..7, centre 4: the centred block 3-5 would leave seats 2 and 6 alone
        // between it and the sold ends; 2-4 leaves a pair.
        let seats = layout(&[(0, "A", &xs(7))]);
        assert_eq!(pick(&seats, &[1], &free("x.....x"), 3), clean(1..4));
        // The end of the row strands as a sold seat does: x 1..5, centre 3, pairs 2-3
        // and 3-4 would strand seat 1 or 5.
        let seats = layout(&[(0, "A", &xs(5))]);
        assert_eq!(pick(&seats, &[1], &free("....."), 2), clean(0..2));
        // A single seat takes the centre when that leaves no seat alone...
        assert_eq!(pick(&seats, &[1], &free("....."), 1), clean(2..3));
        // ...and a seat already alone between sold ones before stranding another.
        assert_eq!(pick(&seats, &[1], &free("x.x.."), 1), clean(1..2));
        // Every block strands: the best one is still given, and says so.
        let seats = layout(&[(0, "A", &xs(6))]);
        assert_eq!(
            pick(&seats, &[1], &free("x....x"), 3),
            Some(Block {
                seats: 1..4,
                strands: true
            })
        );
    }

    #[test]
    fn a_block_that_strands_nothing_wins_over_better_places_that_strand() {
        // Section 0's only row of three strands a seat whichever pair is taken; the
        // second row, and the next section, have pairs that strand nothing.
        let seats = layout(&[(0, "A", &xs(3)), (0, "B", &xs(5)), (1, "A", &xs(4))]);
        assert_eq!(
            pick(&seats, &[20, 10], &free("... ..... ...."), 2),
            clean(3..5)
        );
        assert_eq!(
            pick(&seats, &[20, 10], &free("... .x.x. ...."), 2),
            clean(8..10)
        );
        // Nothing clean anywhere: the best place among those that strand.
        assert_eq!(
            pick(&seats, &[20, 10], &free("... x...x x..."), 2),
            Some(Block {
                seats: 0..2,
                strands: true
            })
        );
    }

    #[test]
    fn no_block_when_no_row_has_enough_adjacent_available_seats() {
        let seats = layout(&[(0, "A", &xs(3)), (1, "A", &xs(5))]);
        assert_eq!(pick(&seats, &[1, 1], &free("... ....."), 6), None);
        assert_eq!(pick(&seats, &[1, 1], &free("... ..x.."), 4), None);
        assert_eq!(pick(&seats, &[1, 1], &free("xxx xxxxx"), 1), None);
        // Available seats in two rows, or across a held one, are not a block.
        let seats = layout(&[(0, "A", &xs(2)), (0, "B", &xs(2))]);
        assert_eq!(pick(&seats, &[1], &free(".. .."), 3), None);
    }

    #[test]
    fn the_section_and_price_narrow_the_search() {
        let seats = layout(&[(0, "A", &xs(4)), (1, "A", &xs(4)), (2, "A", &xs(2))]);
        let prices = sections(&[30_000, 20_000, 10_000]);
        let all = free("........ ..");
        let search = |section, max_price, quantity| {
            let filter = Filter {
                quantity,
                section,
                max_price,
            };
            let eligible = eligible(&prices, &seats, &filter);
            let sections: Vec<usize> = eligible.iter().map(|rows| rows[0].section).collect();
            (sections, choose(&eligible, &seats, &all, quantity))
        };
        assert_eq!(search(None, None, 2), (vec![0, 1, 2], clean(0..2)));
        assert_eq!(search(Some(2), None, 2), (vec![2], clean(8..10)));
        assert_eq!(search(None, Some(20_000), 2), (vec![1, 2], clean(4..6)));
        assert_eq!(search(None, Some(10_000), 2), (vec![2], clean(8..10)));
        assert_eq!(search(None, Some(9_999), 2), (vec![], None));
        // Rows too short for the quantity are never read.
        assert_eq!(search(None, Some(10_000), 3), (vec![], None));
        // Every block of three strands a seat of a row of four: the best of them.
        assert_eq!(
            search(None, None, 3),
            (
                vec![0, 1],
                Some(Block {
                    seats: 0..3,
                    strands: true
                })
            )
        );
    }

    #[test]
    fn the_search_stops_at_the_first_section_with_enough_clean_blocks() {
        let seats = layout(&[(0, "A", &xs(3)), (1, "A", &xs(4)), (2, "A", &xs(4))]);
        let filter = Filter {
            quantity: 2,
            section: None,
            max_price: None,
        };
        let eligible = eligible(&sections(&[3, 2, 1]), &seats, &filter);
        // Only section 0 read so far (the others unknown, so not available): its pairs
        // both strand a seat, so the search goes on.
        let mut known = free("... xxxx xxxx");
        let mut search = Search::new(2, 2);
        assert!(!search.look(&eligible[0], &seats, &known));
        // Section 1's two clean pairs are enough: section 2 is never read.
        known[3..7].copy_from_slice(&free("...."));
        assert!(search.look(&eligible[1], &seats, &known));
        let both = |a: Range<usize>, b: Range<usize>| {
            vec![
                Block {
                    seats: a,
                    strands: false,
                },
                Block {
                    seats: b,
                    strands: false,
                },
            ]
        };
        assert_eq!(search.finish(), both(3..5, 5..7));
        // Too few clean blocks anywhere: the stranding ones follow, best first.
        let all = free("... .... ....");
        let found = candidates(&eligible, &seats, &all, 2, 8);
        let order: Vec<(Range<usize>, bool)> =
            found.into_iter().map(|b| (b.seats, b.strands)).collect();
        assert_eq!(
            order,
            vec![
                (3..5, false),
                (5..7, false),
                (7..9, false),
                (9..11, false),
                (0..2, true),
                (1..3, true),
                (4..6, true),
                (8..10, true),
            ]
        );
        // Within a row, the blocks in order of their centres' distance from the row's.
        let row = layout(&[(0, "A", &xs(9))]);
        let filter = Filter {
            quantity: 1,
            section: None,
            max_price: None,
        };
        let rows = super::eligible(&sections(&[1]), &row, &filter);
        let found: Vec<usize> = candidates(&rows, &row, &free("........."), 1, 9)
            .into_iter()
            .filter(|b| !b.strands)
            .map(|b| b.seats.start)
            .collect();
        assert_eq!(found, vec![4, 3, 5, 2, 6, 0, 8]);
    }
}
