"""The cold path: one fresh process per request, ours against node loading sharp.

usage: python3 cold.py RUNS PHOTO OURS_BIN SHARP_DIR

Runs `OURS_BIN PHOTO` and `node cold.js PHOTO` (in SHARP_DIR, where sharp is installed) RUNS
times each, alternating so that a busy neighbour slows both alike, each child pinned to core 0:
this script pins itself and the children inherit it, so nothing runs between fork and exec (a
`preexec_fn` would make Python fork instead of vfork, and add about 3 ms of its own to each
side's time). Wall time is spawn to reap (`/usr/bin/time` only counts in 10 ms steps).

Peak memory is measured in PEAK_RUNS more runs of each side under GNU `/usr/bin/time -f %M`
(median of the peaks): a vforked child's ru_maxrss counts this script's own resident memory
(about 14 MiB, more than ours), and even a forked one starts from a copy of it.

Prints the medians, the ratio ours/sharp against the goal (<= 0.20) and each side's peak.

Ours runs with GLIBC_TUNABLES set to $OURS_GLIBC_TUNABLES when given (run.sh passes the images
function's, from template.yaml); sharp with the environment as it is.
"""

import os
import statistics
import subprocess
import sys
import time

GOAL = 0.20
PEAK_RUNS = 3
HERE = os.path.dirname(os.path.abspath(__file__))
def once(argv, cwd, env):
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE)
    out = child.stdout.read()
    _, status, _ = os.wait4(child.pid, 0)
    wall = (time.perf_counter() - start) * 1e3
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"cold.py: {argv} exited with {child.returncode}")
    return wall, int(out.split()[0])


def peak_mib(argv, cwd, env):
    """The child's peak resident memory as GNU time reports it (its %M is in KiB)."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    return int(done.stderr.split()[-1]) / 1024


def main():
    runs, photo, ours_bin, sharp_dir = int(sys.argv[1]), *sys.argv[2:5]
    # Core 0 for this script and so for every child (affinity is inherited across fork and exec).
    os.sched_setaffinity(0, {0})
    photo = os.path.abspath(photo)
    ours_env = dict(os.environ)
    if os.environ.get("OURS_GLIBC_TUNABLES"):
        ours_env["GLIBC_TUNABLES"] = os.environ["OURS_GLIBC_TUNABLES"]
    sides = {
        "ours": ([ours_bin, photo], None, ours_env),
        "sharp": (["node", os.path.join(HERE, "cold.js"), photo], sharp_dir, None),
    }
    res = {k: [] for k in sides}
    for _ in range(runs):
        for name, (argv, cwd, env) in sides.items():
            res[name].append(once(argv, cwd, env))
    med = {k: statistics.median(r[0] for r in v) for k, v in res.items()}
    peak = {k: statistics.median(peak_mib(*side) for _ in range(PEAK_RUNS)) for k, side in sides.items()}
    size = {k: v[-1][1] for k, v in res.items()}
    ratio = med["ours"] / med["sharp"]
    print(f"# cold path: fresh process, decode + resize800_jpeg once, {runs} alternating runs each, core 0")
    print(f"{'side':<6} {'median_ms':>9} {'min_ms':>7} {'peak_MiB':>8} {'out_B':>7}")
    for k, v in res.items():
        print(f"{k:<6} {med[k]:9.1f} {min(r[0] for r in v):7.1f} {peak[k]:8.1f} {size[k]:7d}")
    verdict = "ok" if ratio <= GOAL else "MISSED"
    print(f"cold ratio {ratio:.3f} (goal <= {GOAL:.2f}: {verdict}); peak {peak['ours']:.1f} MiB against {peak['sharp']:.1f} MiB")


if __name__ == "__main__":
    main()
