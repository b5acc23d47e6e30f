using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace ParetoQ.Runtime.Kernels;

/// <summary>A unit of parallel work: <see cref="Execute"/> is called once per worker with its contiguous share of the
/// items.</summary>
public interface IParallelJob
{
    /// <summary>Items [begin, end), on worker <paramref name="worker"/> (0 is the calling thread, then
    /// 1..Threads−1).</summary>
    void Execute(int begin, int end, int worker);
}

/// <summary>
/// The one check of a requested worker-thread count, used by the programs, the C ABI and the pool: 0 means the default,
/// one thread per core this process may use (<see cref="Environment.ProcessorCount"/>, which honours affinity and
/// container limits); otherwise 1 up to that many. More threads than cores only make every barrier wait for a thread
/// the OS has descheduled.
/// </summary>
public static class ThreadCount
{
    public static int Default => Environment.ProcessorCount;

    /// <summary>The thread count to use for <paramref name="requested"/>; the message names <paramref name="name"/> (an
    /// option or field).</summary>
    /// <exception cref="ArgumentException">requested is negative or above <see cref="Default"/>.</exception>
    public static int Check(int requested, string name = "threads")
    {
        if (requested < 0 || requested > Default)
            throw new ArgumentException($"{name} {requested} is outside 0..{Default} (0 = one per core; at most one per core this process may use)");
        return requested == 0 ? Default : requested;
    }
}

/// <summary>
/// Persistent worker threads for the kernels. <see cref="Run"/> splits items [0, count) into one contiguous share per
/// thread, or into chunks that free threads claim, runs on the calling thread too, and returns when all are done.
/// Workers spin briefly between jobs (decode issues hundreds of small matmuls per token), then sleep, so an idle pool
/// costs no CPU. Run allocates nothing. Several sessions may share one pool: a Run that finds the pool busy runs its job on the caller's thread
/// alone.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>The shortest claim is 1 / (threads · this) of a job: enough for a slow core to hand work over, few
    /// enough that each claim stays a long sequential stream for the prefetchers.</summary>
    private const int ChunksPerThread = 16;
    private static readonly long s_spinTicks = Stopwatch.Frequency / 5000; // 200 µs of spinning before a worker sleeps

    private readonly Thread[] _workers;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _sleeping;
    private int _generation;          // bumped once per Run; workers watch it
    private int _pending;             // workers still running the current job
    private IParallelJob? _job;
    private int _count;
    private int _chunk;               // the fewest items a claim takes; 0: static shares
    private int _next;                // first item not yet claimed
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _failure;
    private int _busy;

    /// <summary>Threads that run work, the caller included.</summary>
    public int Threads { get; }

    /// <summary><paramref name="threads"/> as <see cref="ThreadCount.Check"/> takes it: 0 is one per core.</summary>
    public WorkerPool(int threads)
    {
        Threads = threads = ThreadCount.Check(threads);
        _callerShare = 1.0 / threads;
        _workers = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        _sleeping = new int[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            int index = i + 1;
            _workers[i] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"paretoq-worker-{index}" };
            _workers[i].Start();
        }
    }

    /// <summary>Share of worker <paramref name="index"/> in [0, count): contiguous and balanced to within one
    /// item.</summary>
    public static (int Begin, int End) Share(int count, int parts, int index) =>
        ((int)((long)count * index / parts), (int)((long)count * (index + 1) / parts));

    /// <summary>
    /// Runs items [0, count) of <paramref name="job"/> over the pool. <paramref name="balance"/> off: one contiguous
    /// share per thread, each a single sequential stream, which memory-bound work (a decode GEMV) needs: every extra
    /// stream restarts the prefetchers, and guided claims made decode 10% slower on a Zen 5 VM. On: guided claims that
    /// a free thread takes, for compute-bound work (prefill), where a slower core (a little core, or one another
    /// process shares) then takes less of the job; 1.3x prefill with a busy neighbour (docs/BENCHMARKS.md).
    /// </summary>
    public void Run(IParallelJob job, int count, bool balance = false)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        if (count <= 0) return;
        if (Threads == 1 || count == 1)
        {
            job.Execute(0, count, 0);
            return;
        }
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            job.Execute(0, count, 0);
            return;
        }
        try
        {
            _job = job;
            _count = count;
            _chunk = balance ? Math.Max(1, count / (Threads * ChunksPerThread)) : 0;
            _next = 0;
            _callerEnd = Math.Clamp((int)Math.Round(count * _callerShare), 1, count - 1);
            _failure = null;
            Volatile.Write(ref _pending, _workers.Length);
            Interlocked.Increment(ref _generation);
            for (int i = 0; i < _workers.Length; i++)
                if (Interlocked.Exchange(ref _sleeping[i], 0) == 1) _wake[i].Release();
            RunShare(0);
            if (!balance) AdaptCallerShare(callerWaits: Volatile.Read(ref _pending) != 0);
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
            _job = null;
            _failure?.Throw();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// Static shares: the caller takes items [0, <see cref="_callerEnd"/>), the workers the rest in equal parts. The
    /// caller starts first (a worker sees a job ~0.4 µs later), and a core shared with another process runs slower, so
    /// an even split left the caller waiting for a worker through 15-20% of a decode step. The caller's share follows
    /// who finished first, a little more after it waited and a little less after a worker did: each side stays one
    /// contiguous stream, and both end at about the same time.
    /// </summary>
    private (int Begin, int End) StaticShare(int count, int index)
    {
        if (index == 0) return (0, _callerEnd);
        var (begin, end) = Share(count - _callerEnd, Threads - 1, index - 1);
        return (_callerEnd + begin, _callerEnd + end);
    }

    private double _callerShare;      // of a static job, for the next Run; only the caller reads and writes it
    private int _callerEnd;           // the current Run's split, fixed before the workers start
    private const double ShareStep = 0.004;

    private void AdaptCallerShare(bool callerWaits)
    {
        double even = 1.0 / Threads;
        _callerShare = Math.Clamp(_callerShare + (callerWaits ? ShareStep : -ShareStep), 0.5 * even, 1.5 * even);
    }

    // Static shares, or guided claims by whichever thread is free (see Run). Jobs write results per item, so the split
    // never changes a result.
    private void RunShare(int index)
    {
        try
        {
            int count = _count, threads = Threads, minChunk = _chunk;
            if (minChunk == 0)
            {
                var (first, last) = StaticShare(count, index);
                if (first < last) _job!.Execute(first, last, index);
                return;
            }
            while (true)
            {
                // Guided: each claim takes a share of what is left, so early claims are long streams and the last
                // ones short enough that no thread waits long for another.
                int begin = Volatile.Read(ref _next);
                if (begin >= count) break;
                int end = Math.Min(count, begin + Math.Max(minChunk, (count - begin) / (2 * threads)));
                if (Interlocked.CompareExchange(ref _next, end, begin) == begin) _job!.Execute(begin, end, index);
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
        }
    }

    private void WorkerLoop(int index)
    {
        int seen = 0;
        while (true)
        {
            long spinUntil = Stopwatch.GetTimestamp() + s_spinTicks;
            while (Volatile.Read(ref _generation) == seen && !_stopping)
            {
                if (Stopwatch.GetTimestamp() < spinUntil)
                {
                    // One pause between looks: 20 made an empty 2-thread dispatch take 1 µs, 1 takes 0.43-0.56
                    // (kernels --bound prints pool_dispatch_ns).
                    Thread.SpinWait(1);
                    continue;
                }
                // Announce the sleep, then look once more: a Run that started in between either sees the flag (and
                // releases us) or we see its generation (and take the flag back, or absorb the release it already
                // sent).
                // a full fence: the flag is visible before we re-read the generation
                Interlocked.Exchange(ref _sleeping[index - 1], 1);
                if (Volatile.Read(ref _generation) != seen || _stopping)
                {
                    if (Interlocked.Exchange(ref _sleeping[index - 1], 0) == 0) _wake[index - 1].Wait();
                    break;
                }
                _wake[index - 1].Wait();
                spinUntil = Stopwatch.GetTimestamp() + s_spinTicks;
            }
            if (_stopping) return;
            seen = Volatile.Read(ref _generation);
            RunShare(index);
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        for (int i = 0; i < _workers.Length; i++)
        {
            Interlocked.Exchange(ref _sleeping[i], 0);
            _wake[i].Release();
        }
        foreach (var t in _workers) t.Join();
        foreach (var s in _wake) s.Dispose();
    }
}
