//! Where each hunk of one file goes (DESIGN §8). The rules, per hunk:
//!
//! 1. Byte for byte at the stated line → [`MatchKind::Exact`].
//! 2. Otherwise every place where the context and removed lines appear byte for byte.
//!    If there are none, every place where they appear ignoring whitespace (leading and
//!    trailing whitespace trimmed, inner runs of blanks folded into one).
//! 3. One place → there. Several → the one strictly nearest to the stated line; refused
//!    if the header states no line, the stated line is past the end of the file, or two
//!    are equally near.
//!
//!    The stated line is only a hint, so its trust is checked against the hunks that
//!    matched at a single place (the *anchors*), which show how far off this answer's
//!    numbers are. Refused as well: a choice that the nearest anchor's offset would
//!    change; a rival candidate within the spread of the anchors' offsets; an exact
//!    match at the stated line (rule 1) when the nearest anchor's offset leads to a
//!    second exact match; and an exact match found away from the stated line when the
//!    stated line itself matches ignoring whitespace.
//! 4. A whitespace-insensitive match takes the indentation shift observed on its
//!    non-blank matched lines (the same prefix added, or removed, on every one of them)
//!    and applies it to the added lines; if the matched lines disagree, it is refused.
//! 5. A pure insertion (no context, no removed line) has no content to match: it goes at
//!    the stated line only when the header is consistent (`-a,0`), the line exists, and
//!    no other hunk of the answer — in this file or, checked by `apply`, any other — was
//!    found away from its stated line. In an empty file it goes at the start. Otherwise
//!    it is refused.
//! 6. A `\ No newline at end of file` marker means the hunk ends the file: matches that
//!    do not are discarded.
//! 7. Hunks may come in any order, since every hunk is matched against the original
//!    file; but no two may claim the same lines, nor insert at the same place.
//!
//! Thin context is fine as long as one of these rules gives a single answer; there is no
//! "fuzz" that drops context lines that do not match, since that is how `patch` ends up
//! applying hunks in the wrong place.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;

use crate::error::{InsertionProblem, RefusalKind};
use crate::model::{Hunk, LineKind};
use crate::report::MatchKind;

/// Where a hunk goes, as decided for the original file.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    /// 0-based index of the first old line it covers (for an insertion: the index the
    /// new lines go before).
    pub pos: usize,
    /// How many old lines it covers.
    pub old_len: usize,
    /// How it matched.
    pub kind: MatchKind,
    /// For whitespace-insensitive matches: how to re-indent added lines.
    pub shift: Option<Shift>,
    /// A pure insertion into a non-empty file, placed by nothing but its stated line:
    /// [`crate::apply`] refuses it when any hunk of the answer, in any file, was found
    /// away from its stated line (the same author wrote all the numbers).
    pub by_line_only: bool,
}

/// A hunk whose every line occurs more often than this is refused outright: it is made
/// of trivial lines (`}`, blank) and checking every place would let a hostile answer burn
/// time (each place costs a comparison of the whole hunk).
const MAX_OCCURRENCES: usize = 20_000;

/// A refusal of one hunk: its 0-based index and why.
pub(crate) type HunkRefusal = (usize, RefusalKind);

/// Places every hunk; returns one placement per hunk (same order), or every refusal.
pub(crate) fn place(file: &[&[u8]], hunks: &[Hunk]) -> Result<Vec<Placement>, Vec<HunkRefusal>> {
    let matcher = Matcher::new(file);
    let found: Vec<Found> = hunks.iter().map(|h| matcher.find(h)).collect();
    let anchors = anchors(hunks, &found);
    let mut placements = Vec::with_capacity(hunks.len());
    let mut refusals = Vec::new();
    for (i, (hunk, found)) in hunks.iter().zip(found).enumerate() {
        match matcher.resolve(i, hunk, found, &anchors) {
            Ok(p) => placements.push(p),
            Err(kind) => refusals.push((i, kind)),
        }
    }
    if refusals.is_empty() {
        refusals = overlaps(&placements);
    }
    if refusals.is_empty() {
        Ok(placements)
    } else {
        refusals.sort_by_key(|(i, _)| *i);
        Err(refusals)
    }
}

/// What the search found for one hunk, before hunks are weighed against each other.
enum Found {
    /// Exact at the stated line.
    AtStated(usize),
    /// Candidates (sorted) of one tier.
    Candidates { positions: Vec<usize>, tier: Tier },
    /// A pure insertion: placed from the header in `resolve`.
    Insertion,
    /// Nothing.
    Refused(RefusalKind),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Exact,
    Whitespace,
}

/// A hunk that matched at a single place, with its stated line: evidence of how far off
/// this file's line numbers are.
struct Anchor {
    /// The hunk's index, so that a hunk is not its own evidence.
    hunk: usize,
    stated: usize,
    offset: i64,
}

fn anchors(hunks: &[Hunk], found: &[Found]) -> Vec<Anchor> {
    hunks
        .iter()
        .zip(found)
        .enumerate()
        .filter_map(|(i, (hunk, found))| {
            let stated = hunk.stated_index()?;
            let pos = match found {
                Found::AtStated(p) => *p,
                Found::Candidates { positions, .. } if positions.len() == 1 => *positions.first()?,
                _ => return None,
            };
            Some(Anchor {
                hunk: i,
                stated,
                offset: signed(pos).saturating_sub(signed(stated)),
            })
        })
        .collect()
}

/// The offset of the anchor (other than hunk `except`) whose stated line is nearest to
/// `stated`.
fn drift_near(anchors: &[Anchor], stated: usize, except: usize) -> i64 {
    anchors
        .iter()
        .filter(|a| a.hunk != except)
        .min_by_key(|a| a.stated.abs_diff(stated))
        .map_or(0, |a| a.offset)
}

fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The file's lines with lazily built indexes.
struct Matcher<'f> {
    lines: &'f [&'f [u8]],
    exact: OnceCell<HashMap<&'f [u8], Vec<usize>>>,
    normalized: OnceCell<Vec<Vec<u8>>>,
    loose: OnceCell<HashMap<Vec<u8>, Vec<usize>>>,
}

impl<'f> Matcher<'f> {
    fn new(lines: &'f [&'f [u8]]) -> Self {
        Matcher {
            lines,
            exact: OnceCell::new(),
            normalized: OnceCell::new(),
            loose: OnceCell::new(),
        }
    }

    /// Positions of every line, byte for byte. Built only when some hunk is not at its
    /// stated line, so a correct diff costs no hashing.
    fn exact_index(&self) -> &HashMap<&'f [u8], Vec<usize>> {
        self.exact.get_or_init(|| {
            let mut map: HashMap<&[u8], Vec<usize>> = HashMap::with_capacity(self.lines.len());
            for (i, line) in self.lines.iter().enumerate() {
                map.entry(*line).or_default().push(i);
            }
            map
        })
    }

    fn normalized(&self) -> &[Vec<u8>] {
        self.normalized
            .get_or_init(|| self.lines.iter().map(|l| normalize(l)).collect())
    }

    fn loose_index(&self) -> &HashMap<Vec<u8>, Vec<usize>> {
        self.loose.get_or_init(|| {
            let mut map: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
            for (i, line) in self.normalized().iter().enumerate() {
                map.entry(line.clone()).or_default().push(i);
            }
            map
        })
    }

    fn exact_at(&self, old: &[&[u8]], pos: usize) -> bool {
        let end = pos.saturating_add(old.len());
        self.lines.get(pos..end).is_some_and(|window| window == old)
    }

    fn loose_at(&self, old: &[Vec<u8>], pos: usize) -> bool {
        let end = pos.saturating_add(old.len());
        self.normalized()
            .get(pos..end)
            .is_some_and(|window| window == old)
    }

    /// Like [`Self::loose_at`] for one position, without normalising the whole file (a
    /// correct diff with shifted numbers checks this once per hunk).
    fn loose_window_at(&self, hunk: &Hunk, pos: usize) -> bool {
        let old_len = hunk.old_lines().count();
        let Some(window) = self.lines.get(pos..pos.saturating_add(old_len)) else {
            return false;
        };
        hunk.old_lines()
            .zip(window)
            .all(|(o, f)| normalize(o.as_bytes()) == normalize(f))
    }

    /// Every position where `old` appears, found through its rarest line.
    /// `Err(n)` when even the hunk's rarest line occurs `n` times, more than
    /// [`MAX_OCCURRENCES`].
    fn candidates<K, F>(&self, old: &[K], index: &HashMap<K, Vec<usize>>, at: F) -> Result<Vec<usize>, usize>
    where
        K: std::hash::Hash + Eq,
        F: Fn(usize) -> bool,
    {
        let mut rarest: Option<(usize, &Vec<usize>)> = None;
        for (j, line) in old.iter().enumerate() {
            let Some(positions) = index.get(line) else {
                return Ok(Vec::new());
            };
            if rarest.is_none_or(|(_, r)| positions.len() < r.len()) {
                rarest = Some((j, positions));
            }
        }
        let Some((j, positions)) = rarest else {
            return Ok(Vec::new());
        };
        // Bounds the work a hostile answer can cause (every position is verified).
        if positions.len() > MAX_OCCURRENCES {
            return Err(positions.len());
        }
        Ok(positions
            .iter()
            .filter_map(|q| q.checked_sub(j))
            .filter(|p| at(*p))
            .collect())
    }

    /// Whether a hunk of `old_len` old lines may start at `pos`: a `\ No newline at end
    /// of file` marker pins it to the end of the file.
    fn fits(&self, hunk: &Hunk, old_len: usize, pos: usize) -> bool {
        let at_eof = hunk.old_missing_newline || hunk.new_missing_newline;
        !at_eof || pos.saturating_add(old_len) == self.lines.len()
    }

    fn find(&self, hunk: &Hunk) -> Found {
        let old: Vec<&[u8]> = hunk.old_lines().map(str::as_bytes).collect();
        if old.is_empty() {
            return Found::Insertion;
        }
        let fits = |p: usize| self.fits(hunk, old.len(), p);
        if let Some(s) = hunk.stated_index()
            && fits(s)
            && self.exact_at(&old, s)
        {
            return Found::AtStated(s);
        }
        let too_many = |occurrences| Found::Refused(RefusalKind::TooManyMatches { occurrences });
        let exact = match self.candidates(&old, self.exact_index(), |p| self.exact_at(&old, p)) {
            Ok(found) => found,
            Err(n) => return too_many(n),
        };
        let (positions, tier) = if exact.is_empty() {
            let loose_old: Vec<Vec<u8>> = old.iter().map(|l| normalize(l)).collect();
            let at = |p| self.loose_at(&loose_old, p);
            match self.candidates(&loose_old, self.loose_index(), at) {
                Ok(found) => (found, Tier::Whitespace),
                Err(n) => return too_many(n),
            }
        } else {
            (exact, Tier::Exact)
        };
        if positions.is_empty() {
            return Found::Refused(RefusalKind::NoMatch {
                best: self.best_partial(&old),
            });
        }
        let positions: Vec<usize> = positions.into_iter().filter(|p| fits(*p)).collect();
        if positions.is_empty() {
            return Found::Refused(RefusalKind::MisplacedNoNewline);
        }
        Found::Candidates { positions, tier }
    }

    /// Where the longest run of the hunk's first old lines matches, as a hint for a hunk
    /// that matched nowhere: (1-based line, number of lines).
    fn best_partial(&self, old: &[&[u8]]) -> Option<(usize, usize)> {
        const LOOKED_AT: usize = 1000;
        let first = old.first()?;
        let positions = self.exact_index().get(first)?;
        positions
            .iter()
            .take(LOOKED_AT)
            .map(|p| {
                let run = old
                    .iter()
                    .zip(self.lines.get(*p..).unwrap_or_default())
                    .take_while(|(a, b)| a == b)
                    .count();
                (p + 1, run)
            })
            .max_by_key(|(p, run)| (*run, std::cmp::Reverse(*p)))
    }

    /// Turns what was found into a placement, weighing the stated line and the other
    /// hunks' offsets.
    fn resolve(
        &self,
        index: usize,
        hunk: &Hunk,
        found: Found,
        anchors: &[Anchor],
    ) -> Result<Placement, RefusalKind> {
        let old_len = hunk.old_lines().count();
        let stated = hunk.stated_index();
        let (pos, tier) = match found {
            Found::Refused(kind) => return Err(kind),
            Found::Insertion => return self.place_insertion(hunk, anchors),
            Found::AtStated(pos) => {
                self.check_drift_at_stated(index, hunk, pos, anchors)?;
                return Ok(Placement {
                    pos,
                    old_len,
                    kind: MatchKind::Exact,
                    shift: None,
                    by_line_only: false,
                });
            }
            Found::Candidates { positions, tier } => (
                choose(index, &positions, stated, anchors, self.lines.len())?,
                tier,
            ),
        };
        match tier {
            Tier::Exact => {
                // The stated line can only conflict where the hunk may go at all.
                if let Some(s) = stated.filter(|s| self.fits(hunk, old_len, *s))
                    && self.loose_window_at(hunk, s)
                {
                    return Err(RefusalKind::ConflictingMatches {
                        exact: pos + 1,
                        stated: s + 1,
                    });
                }
                let kind = match stated {
                    Some(s) => MatchKind::Offset {
                        by: signed(pos).saturating_sub(signed(s)),
                    },
                    None => MatchKind::Searched,
                };
                Ok(Placement {
                    pos,
                    old_len,
                    kind,
                    shift: None,
                    by_line_only: false,
                })
            }
            Tier::Whitespace => {
                let shift = self.shift_at(hunk, pos)?;
                Ok(Placement {
                    pos,
                    old_len,
                    kind: MatchKind::WhitespaceInsensitive,
                    shift: Some(shift),
                    by_line_only: false,
                })
            }
        }
    }

    /// An exact match at the stated line is not enough when the other hunks were found
    /// `d` lines off their stated lines and the hunk matches exactly `d` lines off too:
    /// then the stated line is as likely wrong as theirs, and the two places tie.
    fn check_drift_at_stated(
        &self,
        index: usize,
        hunk: &Hunk,
        pos: usize,
        anchors: &[Anchor],
    ) -> Result<(), RefusalKind> {
        let offset = drift_near(anchors, pos, index);
        if offset == 0 {
            return Ok(());
        }
        let Ok(drifted) = usize::try_from(signed(pos).saturating_add(offset)) else {
            return Ok(());
        };
        let old: Vec<&[u8]> = hunk.old_lines().map(str::as_bytes).collect();
        if self.fits(hunk, old.len(), drifted) && self.exact_at(&old, drifted) {
            let mut candidates = vec![pos + 1, drifted + 1];
            candidates.sort_unstable();
            return Err(RefusalKind::AmbiguousDrift {
                candidates,
                nearest: pos + 1,
                drifted: drifted + 1,
                offset,
            });
        }
        Ok(())
    }

    /// The indentation shift from the hunk's old lines to the file's lines at `pos`, if
    /// it is consistent and can be applied to every added line.
    fn shift_at(&self, hunk: &Hunk, pos: usize) -> Result<Shift, RefusalKind> {
        let inconsistent = RefusalKind::InconsistentIndent { line: pos + 1 };
        let file = self.lines.get(pos..).unwrap_or_default();
        let pairs = hunk.old_lines().map(str::as_bytes).zip(file.iter().copied());
        let shift = Shift::derive(pairs).ok_or(inconsistent.clone())?;
        let has_text = |kind| {
            hunk.lines
                .iter()
                .any(|l| l.kind == kind && !is_blank_line(l.text.as_bytes()))
        };
        // One space more in the file, seen on context lines only: the signature of
        // context lines written without their ` ` prefix. Then the added lines are
        // probably right as they are, and shifting them would be wrong; a removed line
        // (whose `-` cannot be lost) showing the same shift would settle it.
        if shift == Shift::Add(vec![b' ']) && !has_text(LineKind::Removed) && has_text(LineKind::Added) {
            return Err(RefusalKind::ContextPrefixLost { line: pos + 1 });
        }
        let added_ok = hunk
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Added)
            .all(|l| shift.apply(l.text.as_bytes()).is_some());
        if added_ok { Ok(shift) } else { Err(inconsistent) }
    }

    fn place_insertion(&self, hunk: &Hunk, anchors: &[Anchor]) -> Result<Placement, RefusalKind> {
        let n = self.lines.len();
        let refuse = |why| Err(RefusalKind::InsertionPosition { why });
        let at = |pos, kind| {
            Ok(Placement {
                pos,
                old_len: 0,
                kind,
                shift: None,
                by_line_only: n > 0,
            })
        };
        if n == 0 {
            // An empty file has a single place to insert at.
            return at(
                0,
                hunk.stated_index()
                    .map_or(MatchKind::Searched, |_| MatchKind::Exact),
            );
        }
        let Some(stated) = hunk.stated_index() else {
            return refuse(InsertionProblem::NoLine);
        };
        if hunk.old_start.is_none() || hunk.old_count != Some(0) {
            return refuse(InsertionProblem::InconsistentHeader);
        }
        if stated > n {
            return refuse(InsertionProblem::PastEnd { stated, len: n });
        }
        if let Some(a) = anchors.iter().find(|a| a.offset != 0) {
            return refuse(InsertionProblem::Drift { offset: a.offset });
        }
        if hunk.new_missing_newline && stated != n {
            return Err(RefusalKind::MisplacedNoNewline);
        }
        at(stated, MatchKind::Exact)
    }
}

/// Picks among several candidates (0-based, sorted) by the stated line.
fn choose(
    index: usize,
    positions: &[usize],
    stated: Option<usize>,
    anchors: &[Anchor],
    len: usize,
) -> Result<usize, RefusalKind> {
    let lines = || positions.iter().map(|p| p + 1).collect::<Vec<_>>();
    if let [only] = positions {
        return Ok(*only);
    }
    let Some(stated) = stated else {
        return Err(RefusalKind::AmbiguousNoLine { candidates: lines() });
    };
    // "Nearest to a line that does not exist" means nothing.
    if stated > len {
        return Err(RefusalKind::AmbiguousPastEnd {
            candidates: lines(),
            stated: stated.saturating_add(1),
            len,
        });
    }
    let chosen = nearest(positions, signed(stated)).map_err(|(a, b)| RefusalKind::AmbiguousTie {
        candidates: lines(),
        tied: (a + 1, b + 1),
        stated: stated.saturating_add(1),
    })?;
    let offset = drift_near(anchors, stated, index);
    if offset != 0 {
        let drifted = match nearest(positions, signed(stated).saturating_add(offset)) {
            Ok(p) => p,
            // A tie is no agreement: report the tied candidate that is not `chosen`.
            Err((a, b)) => {
                if a == chosen {
                    b
                } else {
                    a
                }
            }
        };
        if drifted != chosen {
            return Err(RefusalKind::AmbiguousDrift {
                candidates: lines(),
                nearest: chosen + 1,
                drifted: drifted + 1,
                offset,
            });
        }
    }
    // The stated line is only as precise as the file's other hunks showed: when their
    // offsets disagree by `spread` lines, a rival within that much of the chosen
    // candidate's distance could as well be the intended place.
    let spread = anchors.iter().map(|a| a.offset).max().unwrap_or(0)
        - anchors.iter().map(|a| a.offset).min().unwrap_or(0);
    if spread > 0 {
        let target = signed(stated).saturating_add(offset);
        let distance = |p: usize| signed(p).saturating_sub(target).unsigned_abs();
        let limit = distance(chosen).saturating_add(spread.unsigned_abs());
        if let Some(rival) = positions.iter().find(|p| **p != chosen && distance(**p) <= limit) {
            return Err(RefusalKind::AmbiguousUneven {
                candidates: lines(),
                chosen: chosen + 1,
                rival: rival + 1,
                spread: spread.unsigned_abs(),
            });
        }
    }
    Ok(chosen)
}

/// The position strictly nearest to `target`, or the first two tied ones.
fn nearest(positions: &[usize], target: i64) -> Result<usize, (usize, usize)> {
    let distance = |p: usize| signed(p).saturating_sub(target).unsigned_abs();
    let best = positions.iter().map(|p| distance(*p)).min().unwrap_or(0);
    let mut at_best = positions.iter().filter(|p| distance(**p) == best);
    match (at_best.next(), at_best.next()) {
        (Some(a), None) => Ok(*a),
        (Some(a), Some(b)) => Err((*a, *b)),
        (None, _) => Err((0, 0)),
    }
}

/// Refuses hunks that overlap an earlier one, or insert where another one inserts.
fn overlaps(placements: &[Placement]) -> Vec<HunkRefusal> {
    let mut order: Vec<usize> = (0..placements.len()).collect();
    // Insertions sort before a hunk that starts at the same line: they go before it.
    order.sort_by_key(|&i| placements.get(i).map(|p| (p.pos, p.old_len > 0, i)));
    let mut refusals = Vec::new();
    // The hunk that reaches furthest so far: (index, end).
    let mut reach: Option<(usize, usize)> = None;
    let mut last_insertion: Option<(usize, usize)> = None;
    for i in order {
        let Some(p) = placements.get(i) else {
            continue;
        };
        let end = p.pos + p.old_len;
        if p.old_len == 0 {
            if let Some((other, at)) = last_insertion.filter(|(_, at)| *at == p.pos) {
                refusals.push((
                    i,
                    RefusalKind::InsertionPosition {
                        why: InsertionProblem::SamePlace { other: other + 1 },
                    },
                ));
                last_insertion = Some((other, at));
                continue;
            }
            last_insertion = Some((i, p.pos));
        }
        match reach {
            Some((other, other_end)) if other_end > p.pos => {
                refusals.push((
                    i,
                    RefusalKind::Overlap {
                        other: other + 1,
                        start: p.pos + 1,
                        end: end.min(other_end).max(p.pos + 1),
                    },
                ));
            }
            _ => {}
        }
        if reach.is_none_or(|(_, e)| end > e) {
            reach = Some((i, end));
        }
    }
    refusals
}

/// The form lines are compared in when ignoring whitespace: trimmed, inner runs of
/// blanks folded into one space.
pub(crate) fn normalize(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut pending_space = false;
    for &b in line {
        if is_blank(b) {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
        }
    }
    out
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

fn indent(line: &[u8]) -> &[u8] {
    let n = line.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    line.get(..n).unwrap_or_default()
}

fn is_blank_line(line: &[u8]) -> bool {
    line.iter().all(|b| is_blank(*b))
}

/// An indentation change: either a prefix added to every line, or one removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shift {
    /// The file has this more indentation than the patch.
    Add(Vec<u8>),
    /// The file has this less.
    Strip(Vec<u8>),
}

impl Shift {
    /// Derives the shift from (patch line, file line) pairs; `None` when the non-blank
    /// pairs disagree.
    fn derive<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Option<Shift> {
        let mut shift: Option<Shift> = None;
        for (patch, file) in pairs {
            if is_blank_line(patch) || is_blank_line(file) {
                continue;
            }
            let (pi, fi) = (indent(patch), indent(file));
            let this = if fi.len() >= pi.len() {
                let (added, rest) = fi.split_at(fi.len() - pi.len());
                (rest == pi).then(|| Shift::Add(added.to_vec()))?
            } else {
                let (removed, rest) = pi.split_at(pi.len() - fi.len());
                (rest == fi).then(|| Shift::Strip(removed.to_vec()))?
            };
            match &shift {
                None => shift = Some(this),
                Some(s) if *s == this => {}
                Some(_) => return None,
            }
        }
        Some(shift.unwrap_or(Shift::Add(Vec::new())))
    }

    /// Re-indents an added line; `None` when it lacks the indentation to strip.
    pub(crate) fn apply<'a>(&self, line: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        if is_blank_line(line) {
            return Some(Cow::Borrowed(line));
        }
        match self {
            Shift::Add(prefix) if prefix.is_empty() => Some(Cow::Borrowed(line)),
            Shift::Add(prefix) => {
                let mut out = prefix.clone();
                out.extend_from_slice(line);
                Some(Cow::Owned(out))
            }
            Shift::Strip(prefix) => {
                if indent(line).starts_with(prefix) {
                    line.get(prefix.len()..).map(Cow::Borrowed)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
