"""The run summary's sentence on dropped frames, from the figures of two real demo runs.

Figures from ``summary.json`` of ``make demo`` on a 2-core Intel Xeon: idle (1262 of 1500
frames processed, inference p50 7.4 ms against 6.7 ms between frames at 150 FPS) and
loaded by a training beside it at a higher priority (63 of 1500, inference 16.7 ms).
"""

from __future__ import annotations

from rich.console import Console

from rtpose.live.summary import print_summary, why_dropped


def _latency(inference, overhead, exposure, arrival):
    def fig(p50, p99, mean=None):
        return {"p50": p50, "p99": p99, "mean": mean if mean is not None else p50, "max": p99, "count": 1}
    return {"inference": fig(*inference), "overhead": fig(*overhead), "exposure_to_output": fig(*exposure),
            "arrival_to_output": fig(*arrival)}


def _frames(processed, replaced):
    return {"acquired": 1500, "processed": processed, "dropped": 1500 - processed,
            "dropped_by_reason": {"camera": 0, "replaced": replaced, "shutdown": 0, "error": 0, "lost": 0}}


def test_a_loop_slower_than_the_camera_says_so():
    text = why_dropped(_frames(1262, 237), _latency((7.45, 10.65), (0.05, 0.17), (11.7, 17.7), (11.0, 15.9)),
                       150.0, 10.0)
    assert text.startswith("the loop took 7.9 ms a frame on average (inference p50 7.5 ms, p99 10.7 ms")
    assert "every 6.7 ms at 150 FPS: the newest frame wins" in text


def test_a_loop_idle_most_of_the_run_points_at_late_frames():
    text = why_dropped(_frames(63, 1430), _latency((16.7, 109.2, 20.0), (0.08, 32.4), (45.5, 1409.1),
                                                   (16.8, 109.2)), 150.0, 10.0)
    assert text.startswith("the loop was busy only 13% of the run") and "short of CPU" in text
    assert "exposure -> output p50 46 ms, arrival -> output 17 ms" in text


def test_slow_frames_alone_and_no_drops():
    text = why_dropped(_frames(1400, 100), _latency((5.0, 12.0), (0.05, 0.2), (6.0, 14.0), (5.5, 13.0)), 150.0, 9.0)
    assert text.startswith("the loop keeps up on average (6.4 ms a frame against 6.7 ms between frames), but slow "
                           "frames (inference p99 12 ms)")
    assert why_dropped(_frames(1500, 0), _latency((5.0, 6.0), (0.05, 0.2), (6.0, 7.0), (5.5, 6.5)), 150.0, 10.0) is None


def test_the_table_shows_the_sentence():
    frames = _frames(1262, 237)
    latency = _latency((7.45, 10.65), (0.05, 0.17), (11.7, 17.7), (11.0, 15.9))
    frames["processed_fps"] = 126.2
    frames["why_dropped"] = why_dropped(frames, latency, 150.0, 10.0)
    summary = {"name": "demo", "stop": {"reason": "duration", "error": None, "problems_during_shutdown": []},
               "wall_s": 10.0, "model": {"export_dir": "models/flies13", "engine": "ort-cpu", "device": "cpu"},
               "camera": {"name": "replay:clip.mp4", "fps": 150.0}, "frames": frames, "latency_ms": latency,
               "triggers": 0, "triggers_by_output": {}, "rule_true_frames": {}, "pulses": {},
               "outputs_final_volts": {"opto_led": 0.0}, "publisher": None, "recording": None}
    console = Console(record=True, width=250)
    print_summary(summary, console)
    text = " ".join(console.export_text().split())  # rich wraps long cells
    assert "why dropped" in text and "the newest frame wins" in text
