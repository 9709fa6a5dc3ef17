//! Runs a DAG of jobs on worker threads: a job starts as soon as its parents
//! succeeded; a failure skips only its descendants; fail-fast stops new work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Success,
    /// Finished but with a warning (tests); descendants still run.
    Warn,
    Error,
    Skipped,
}

struct State<'a> {
    waiting_on: Vec<usize>,
    ready: VecDeque<usize>,
    status: Vec<Option<JobStatus>>,
    remaining: usize,
    /// Jobs that start only once every other job has finished.
    last: &'a [bool],
    /// Jobs not marked `last` that have not finished.
    first_left: usize,
}

impl State<'_> {
    fn settle(&mut self, job: usize, status: JobStatus) {
        self.status[job] = Some(status);
        self.remaining -= 1;
        if !self.last.get(job).copied().unwrap_or(false) {
            self.first_left -= 1;
        }
    }

    /// The next ready job; a `last` job only when nothing else is left.
    fn take_ready(&mut self) -> Option<usize> {
        if self.first_left == 0 {
            return self.ready.pop_front();
        }
        let pos = self
            .ready
            .iter()
            .position(|&j| !self.last.get(j).copied().unwrap_or(false))?;
        self.ready.remove(pos)
    }
}

/// Runs `run(job, thread_index)` for every job in dependency order with up to
/// `threads` jobs at once. `parents[i]` lists the jobs job `i` waits for.
/// `on_skip(job, failed_ancestor)` is called for each skipped job.
pub fn run_dag<F, S>(
    parents: &[Vec<usize>],
    threads: usize,
    stop: &AtomicBool,
    run: F,
    on_skip: S,
) -> Vec<JobStatus>
where
    F: Fn(usize, usize) -> JobStatus + Sync,
    S: Fn(usize, Option<usize>) + Sync,
{
    run_dag_last(parents, &[], threads, stop, run, on_skip)
}

/// `run_dag`, where jobs with `last[i]` set start only after every other job
/// finished (whatever its status): singular tests that name no parent see the
/// whole run's results.
pub fn run_dag_last<F, S>(
    parents: &[Vec<usize>],
    last: &[bool],
    threads: usize,
    stop: &AtomicBool,
    run: F,
    on_skip: S,
) -> Vec<JobStatus>
where
    F: Fn(usize, usize) -> JobStatus + Sync,
    S: Fn(usize, Option<usize>) + Sync,
{
    let n = parents.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ps) in parents.iter().enumerate() {
        for &p in ps {
            children[p].push(i);
        }
    }
    let ready: VecDeque<usize> = (0..n).filter(|&i| parents[i].is_empty()).collect();
    let state = Mutex::new(State {
        waiting_on: parents.iter().map(Vec::len).collect(),
        ready,
        status: vec![None; n],
        remaining: n,
        last,
        first_left: (0..n)
            .filter(|&i| !last.get(i).copied().unwrap_or(false))
            .count(),
    });
    let cv = Condvar::new();

    let skip_descendants = |st: &mut State, from: usize| {
        let mut stack = children[from].clone();
        while let Some(c) = stack.pop() {
            if st.status[c].is_none() {
                st.settle(c, JobStatus::Skipped);
                on_skip(c, Some(from));
                stack.extend(children[c].iter().copied());
            }
        }
    };

    std::thread::scope(|scope| {
        for t in 0..threads.max(1).min(n.max(1)) {
            let state = &state;
            let cv = &cv;
            let run = &run;
            let on_skip = &on_skip;
            let children = &children;
            let skip_descendants = &skip_descendants;
            let worker = move || loop {
                let job = {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        if st.remaining == 0 {
                            return;
                        }
                        if stop.load(Ordering::SeqCst) {
                            // Fail-fast or interrupt: nothing new starts.
                            for i in st.ready.drain(..).collect::<Vec<_>>() {
                                st.settle(i, JobStatus::Skipped);
                                on_skip(i, None);
                                skip_descendants(&mut st, i);
                            }
                            if st.remaining == 0 {
                                cv.notify_all();
                                return;
                            }
                            st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                            continue;
                        }
                        if let Some(j) = st.take_ready() {
                            break j;
                        }
                        st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                };
                let result = run(job, t);
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.settle(job, result);
                match result {
                    JobStatus::Error | JobStatus::Skipped => skip_descendants(&mut st, job),
                    _ => {
                        for &c in &children[job] {
                            st.waiting_on[c] -= 1;
                            if st.waiting_on[c] == 0 && st.status[c].is_none() {
                                if stop.load(Ordering::SeqCst) {
                                    st.settle(c, JobStatus::Skipped);
                                    on_skip(c, None);
                                    skip_descendants(&mut st, c);
                                } else {
                                    st.ready.push_back(c);
                                }
                            }
                        }
                    }
                }
                cv.notify_all();
            };
            // Jobs render hooks: give them the stack templates need, or the
            // default one when the system refuses it.
            let worker = std::sync::Arc::new(worker);
            let w = worker.clone();
            if std::thread::Builder::new()
                .stack_size(crate::jinja::STACK_BYTES)
                .spawn_scoped(scope, move || w())
                .is_err()
            {
                scope.spawn(move || worker());
            }
        }
    });
    state
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .status
        .into_iter()
        .map(|s| s.unwrap_or(JobStatus::Skipped))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_skips_only_descendants() {
        // 0 -> 1 -> 2, 0 -> 3 ; 4 independent. Job 1 fails.
        let parents = vec![vec![], vec![0], vec![1], vec![0], vec![]];
        let stop = AtomicBool::new(false);
        let skipped = Mutex::new(Vec::new());
        let st = run_dag(
            &parents,
            4,
            &stop,
            |j, _| {
                if j == 1 {
                    JobStatus::Error
                } else {
                    JobStatus::Success
                }
            },
            |j, _| skipped.lock().unwrap().push(j),
        );
        assert_eq!(
            st,
            vec![
                JobStatus::Success,
                JobStatus::Error,
                JobStatus::Skipped,
                JobStatus::Success,
                JobStatus::Success
            ]
        );
        assert_eq!(*skipped.lock().unwrap(), vec![2]);
    }

    #[test]
    fn parents_finish_before_children() {
        let parents: Vec<Vec<usize>> = (0..50)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let stop = AtomicBool::new(false);
        let order = Mutex::new(Vec::new());
        run_dag(
            &parents,
            8,
            &stop,
            |j, _| {
                order.lock().unwrap().push(j);
                JobStatus::Success
            },
            |_, _| {},
        );
        assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn stop_skips_everything_not_started() {
        let parents = vec![vec![], vec![0], vec![1]];
        let stop = AtomicBool::new(false);
        let st = run_dag(
            &parents,
            1,
            &stop,
            |j, _| {
                if j == 0 {
                    stop.store(true, Ordering::SeqCst);
                }
                JobStatus::Success
            },
            |_, _| {},
        );
        assert_eq!(
            st,
            vec![JobStatus::Success, JobStatus::Skipped, JobStatus::Skipped]
        );
    }
}
