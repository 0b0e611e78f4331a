"""resnas.interrupt: Ctrl-C taken at a safe point, with real SIGINTs sent to this process."""

import os
import signal
import threading

import pytest

from resnas import interrupt


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)


def test_a_ctrl_c_inside_waits_for_the_next_check():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            ctrl_c()
            reached.append("after the signal")  # nothing raised in the middle of this
            interrupt.check()
            reached.append("after the check")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_never_checked_is_raised_when_the_block_ends():
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            ctrl_c()
    interrupt.check()  # taken: nothing pending for the next block


def test_a_second_ctrl_c_interrupts_at_once():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            ctrl_c()
            reached.append(1)
            ctrl_c()
            reached.append(2)
    assert reached == [1]


def test_without_a_ctrl_c_the_check_passes_and_the_handler_is_restored():
    with interrupt.deferred():
        interrupt.check()
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_blocks_keep_the_outer_handler():
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            with interrupt.deferred():
                pass
            ctrl_c()
            interrupt.check()


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.deferred():
            ctrl_c()
            interrupt.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_off_the_main_thread_it_changes_nothing():
    seen = []

    def body():
        with interrupt.deferred():
            seen.append(signal.getsignal(signal.SIGINT))
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]
