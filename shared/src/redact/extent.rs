//! Where a match may still be in progress at the end of a growing text.
//!
//! A stream redactor may send text only once nothing that comes later can change what
//! is found in it. Each detector therefore declares the extent of what it matches as a
//! regex (the value, plus the keyword before it where the keyword is part of the match,
//! as with "Bearer <token>"); a lazy DFA, started at every character, is stepped one
//! byte at a time as text arrives. A start whose DFA is not dead may still grow into a
//! match, so text from the earliest such start is held back. Threads in the same DFA
//! state have the same future, so only the earliest of them is kept: stepping costs
//! time per byte bounded by the number of live states, whatever the chunking, and no
//! byte is stepped twice.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Hir, HirKind};

use super::detectors;
use super::fold::fold_char;

/// Lazy-DFA cache per stream; the extents need a few dozen states.
const CACHE_BYTES: usize = 2 << 20;
/// Clean positions are remembered at most this often (bytes), to bound memory.
const CLEAN_EVERY: usize = 16;
/// Warm caches kept per automaton for the next streams.
const POOLED: usize = 4;

/// One compiled automaton, with the caches of finished streams: a warm cache
/// already holds the states text usually needs, so a new stream does not
/// determinise them again.
struct Automaton {
    dfa: DFA,
    /// Per byte: whether a thread started on it survives the byte.
    starts_on: [bool; 256],
    caches: Mutex<Vec<Cache>>,
}

/// The compiled extents of one policy's detectors.
#[derive(Clone)]
pub(super) struct Extents {
    /// Everything but private keys, as one union where every thread is kept
    /// (`MatchKind::All`): a superset of what leftmost-first would keep, so never
    /// too short a hold.
    all: Option<Arc<Automaton>>,
    /// A PEM block ends at its first END line (leftmost-first, lazy), which `All`
    /// would not see.
    private_key: Option<Arc<Automaton>>,
}

impl fmt::Debug for Extents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extents").finish_non_exhaustive()
    }
}

/// `hir` with look-around assertions (`\b`, `^`, `$`) removed: matches a superset of
/// the original, which is what a hold-back needs.
fn without_looks(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Look(_) => Hir::empty(),
        HirKind::Repetition(mut r) => {
            r.sub = Box::new(without_looks(*r.sub));
            Hir::repetition(r)
        }
        HirKind::Capture(c) => without_looks(*c.sub),
        HirKind::Concat(v) => Hir::concat(v.into_iter().map(without_looks).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.into_iter().map(without_looks).collect()),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0),
        HirKind::Class(c) => Hir::class(c),
    }
}

fn build(patterns: &[String], kind: MatchKind) -> Option<Arc<Automaton>> {
    let mut hirs = Vec::with_capacity(patterns.len());
    for p in patterns {
        hirs.push(without_looks(regex_syntax::parse(p).ok()?));
    }
    let nfa = thompson::Compiler::new().build_many_from_hir(&hirs).ok()?;
    let dfa = DFA::builder()
        .configure(
            DFA::config()
                .match_kind(kind)
                .cache_capacity(CACHE_BYTES)
                .skip_cache_capacity_check(true),
        )
        .build_from_nfa(nfa)
        .ok()?;
    let mut cache = dfa.create_cache();
    let start = dfa
        .start_state(&mut cache, &start::Config::new().anchored(Anchored::Yes))
        .ok()?;
    let mut starts_on = [false; 256];
    for (b, on) in starts_on.iter_mut().enumerate() {
        let n = dfa.next_state(&mut cache, start, b as u8).ok()?;
        *on = !n.is_dead();
    }
    Some(Arc::new(Automaton {
        dfa,
        starts_on,
        caches: Mutex::new(vec![cache]),
    }))
}

impl Extents {
    /// Extents of the built-in detectors plus the tenant's `patterns` (custom regexes
    /// and the denylist). A pattern the DFA cannot take leaves the extent unknown, and
    /// a stream then holds everything back until it ends.
    pub(super) fn new(patterns: Vec<String>) -> Extents {
        let mut all: Vec<String> = detectors::EXTENTS.iter().map(|p| p.to_string()).collect();
        all.extend(patterns);
        Extents {
            all: build(&all, MatchKind::All),
            private_key: build(
                &[detectors::PRIVATE_KEY_EXTENT.to_string()],
                MatchKind::LeftmostFirst,
            ),
        }
    }
}

/// One automaton's live threads: (state, absolute start of the earliest thread in it).
struct Lane {
    automaton: Arc<Automaton>,
    /// Always `Some` until the lane is dropped and gives it back to the pool
    /// (taken, not swapped for a fresh cache: creating one costs more than a
    /// short turn's whole redaction).
    cache: Option<Cache>,
    start: LazyStateID,
    threads: Vec<(LazyStateID, usize)>,
    next: Vec<(LazyStateID, usize)>,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take()
            && let Ok(mut pool) = self.automaton.caches.lock()
            && pool.len() < POOLED
        {
            pool.push(cache);
        }
    }
}

impl Lane {
    fn new(automaton: &Arc<Automaton>) -> Option<Lane> {
        let pooled = automaton.caches.lock().ok().and_then(|mut p| p.pop());
        let mut cache = pooled.unwrap_or_else(|| automaton.dfa.create_cache());
        let start = automaton
            .dfa
            .start_state(&mut cache, &start::Config::new().anchored(Anchored::Yes))
            .ok()?;
        Some(Lane {
            automaton: automaton.clone(),
            cache: Some(cache),
            start,
            threads: Vec::new(),
            next: Vec::new(),
        })
    }

    /// Steps every thread over `byte`, first starting one at `pos` if `char_start`.
    /// `Err` if the DFA gave up (its cache was cleared, invalidating the states held).
    fn step(&mut self, byte: u8, char_start: bool, pos: usize) -> Result<(), ()> {
        let start = char_start && self.automaton.starts_on[usize::from(byte)];
        if self.threads.is_empty() && !start {
            return Ok(());
        }
        let Some(cache) = self.cache.as_mut() else {
            return Err(());
        };
        let clears = cache.clear_count();
        self.next.clear();
        let started = start.then_some((self.start, pos));
        for (sid, from) in self.threads.iter().copied().chain(started) {
            let n = self
                .automaton
                .dfa
                .next_state(cache, sid, byte)
                .map_err(|_| ())?;
            if n.is_quit() {
                return Err(());
            }
            if !n.is_dead() && !self.next.iter().any(|(s, _)| *s == n) {
                self.next.push((n, from));
            }
        }
        if cache.clear_count() != clears {
            return Err(());
        }
        std::mem::swap(&mut self.threads, &mut self.next);
        Ok(())
    }

    fn earliest(&self) -> Option<usize> {
        self.threads.iter().map(|&(_, from)| from).min()
    }
}

/// Follows a growing text: where a match may still start, where the text is clean.
pub struct Tracker {
    lanes: Vec<Lane>,
    /// Set when the extents are unknown or a DFA gave up: hold from here on.
    stuck: Option<usize>,
    /// Absolute length of the text fed so far, and of its folded view.
    len: usize,
    view_len: usize,
    /// Starts of the last two visible characters (the newer second).
    last_visible: [Option<usize>; 2],
    /// Positions (absolute, view) no possible match straddles: a scan may start there.
    clean: VecDeque<(usize, usize)>,
    scratch: String,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("len", &self.len)
            .field("stuck", &self.stuck)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker for a text starting at absolute offset `at`.
    pub(super) fn new(extents: &Extents, at: usize) -> Tracker {
        let lanes: Option<Vec<Lane>> = [&extents.all, &extents.private_key]
            .into_iter()
            .map(|d| d.as_ref().and_then(Lane::new))
            .collect();
        let stuck = lanes.is_none().then_some(at);
        Tracker {
            lanes: lanes.unwrap_or_default(),
            stuck,
            len: at,
            view_len: 0,
            last_visible: [None, None],
            clean: VecDeque::new(),
            scratch: String::new(),
        }
    }

    /// Feeds the next piece of text.
    pub fn feed(&mut self, text: &str) {
        let mut folded = std::mem::take(&mut self.scratch);
        for (i, c) in text.char_indices() {
            let pos = self.len + i;
            // ASCII folds to itself: most text skips folding altogether.
            if c.is_ascii() {
                self.step_char(pos, &[c as u8]);
                continue;
            }
            folded.clear();
            fold_char(c, &mut folded);
            self.step_char(pos, folded.as_bytes());
        }
        self.scratch = folded;
        self.len += text.len();
    }

    /// Steps the lanes over one character at absolute offset `pos`, as
    /// detectors see it (`view`: its folded bytes; empty for a format character).
    fn step_char(&mut self, pos: usize, view: &[u8]) {
        if view.is_empty() {
            return;
        }
        let clean = self.lanes.iter().all(|l| l.threads.is_empty());
        if self.stuck.is_none() && clean {
            let due = self
                .clean
                .back()
                .is_none_or(|&(p, _)| pos >= p + CLEAN_EVERY);
            if due {
                self.clean.push_back((pos, self.view_len));
            }
        }
        self.last_visible = [self.last_visible[1], Some(pos)];
        self.view_len += view.len();
        if self.stuck.is_some() {
            return;
        }
        for lane in &mut self.lanes {
            for (j, &b) in view.iter().enumerate() {
                // UTF-8 continuation bytes are 10xxxxxx.
                let char_start = b & 0xC0 != 0x80 || j == 0;
                if lane.step(b, char_start, pos).is_err() {
                    let earliest = lane.earliest().unwrap_or(pos).min(pos);
                    self.stuck = Some(earliest);
                    break;
                }
            }
        }
        if let Some(s) = self.stuck {
            let earliest = self.lanes.iter().filter_map(Lane::earliest).min();
            self.stuck = Some(earliest.map_or(s, |e| e.min(s)));
            self.lanes.clear();
        }
    }

    /// The earliest absolute offset from which text may still be part of a match that
    /// more input could create or change; `None` if there is none.
    pub fn hold(&self) -> Option<usize> {
        self.lanes
            .iter()
            .filter_map(Lane::earliest)
            .chain(self.stuck)
            .min()
    }

    /// How far text may go out: up to the second-last visible character, so each
    /// finding's right-hand context (two characters) is known.
    pub fn cap(&self) -> usize {
        self.last_visible[0].unwrap_or(0)
    }

    /// Length of the folded view fed so far.
    pub fn view_len(&self) -> usize {
        self.view_len
    }

    /// Drops threads that start before `at` (text up to there was sent regardless).
    pub fn forget_before(&mut self, at: usize) {
        for lane in &mut self.lanes {
            lane.threads.retain(|&(_, from)| from >= at);
        }
        if let Some(s) = self.stuck.as_mut() {
            *s = (*s).max(at);
        }
    }

    /// The last clean position whose view offset is at most `view`, forgetting it and
    /// every earlier one.
    pub fn take_clean(&mut self, view: usize) -> Option<usize> {
        let mut last = None;
        while let Some(&(p, v)) = self.clean.front() {
            if v > view {
                break;
            }
            last = Some(p);
            self.clean.pop_front();
        }
        last
    }
}
