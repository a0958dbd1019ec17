#ifndef CURING_SIGNALS_H
#define CURING_SIGNALS_H

/// Starts delivering `signals` (`count` numbers) as bytes written to a new
/// pipe; returns the pipe's reading end (close-on-exec) and
/// stores the watcher's slot in `*slot`, or returns -1 with errno. The
/// previous disposition of each signal is saved, and restored when the last
/// watcher of that signal stops.
int cu_signals_watch(const int *signals, int count, int *slot);
/// Stops watcher `slot`: its pipe's writing end is closed once no handler
/// can still be writing to it.
void cu_signals_unwatch(int slot);

#endif
