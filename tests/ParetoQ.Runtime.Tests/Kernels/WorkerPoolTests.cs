using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Runtime.Tests;

public sealed class WorkerPoolTests
{
    // Counts every item it is given, and records which worker ran it.
    private sealed class CountingJob(int count) : IParallelJob
    {
        public readonly int[] Runs = new int[count];
        public readonly int[] Workers = new int[count];
        public int Calls;

        public void Execute(int begin, int end, int worker)
        {
            Assert.True(0 <= begin && begin < end && end <= Runs.Length, $"range [{begin}, {end}) of {Runs.Length}");
            Interlocked.Increment(ref Calls);
            for (int i = begin; i < end; i++)
            {
                Interlocked.Increment(ref Runs[i]);
                Workers[i] = worker;
                Thread.SpinWait(200); // long enough that the workers get to claim items
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Every_item_runs_exactly_once_in_either_split(bool balance)
    {
        using var pool = new WorkerPool(Math.Min(4, Environment.ProcessorCount));
        foreach (int count in new[] { 1, 2, 3, 5, 7, 64, 1000, 1793 })
            for (int round = 0; round < 3; round++)
            {
                var job = new CountingJob(count);
                pool.Run(job, count, balance);
                Assert.All(job.Runs, r => Assert.Equal(1, r));
                if (!balance) Assert.True(job.Calls <= pool.Threads, $"{job.Calls} calls for {pool.Threads} threads");
            }
    }

    [Fact]
    public void A_balanced_run_hands_work_to_a_free_thread_when_another_is_held_up()
    {
        using var pool = new WorkerPool(2);
        if (pool.Threads < 2) return; // nothing to hand over on one core
        // Item 0 holds whichever thread takes it for a long time: the other must take the rest.
        var job = new SlowFirstItem();
        pool.Run(job, 400, balance: true);
        Assert.True(job.RunByOthers >= 300, $"{job.RunByOthers} of 399 items ran on the thread that was free");
    }

    [Fact]
    public void A_static_split_moves_items_to_the_caller_while_a_worker_is_slower()
    {
        using var pool = new WorkerPool(2);
        if (pool.Threads < 2) return;
        var job = new SlowWorker();
        for (int run = 0; run < 200; run++)
        {
            job.Items = job.ByCaller = 0;
            pool.Run(job, 1000);
            Assert.Equal(1000, job.Items);
        }
        // An even split gives the caller 500 items; its share stops at 1.5 times that.
        Assert.True(job.ByCaller >= 650, $"the caller ran {job.ByCaller} of 1000 items after 200 runs");
    }

    // An item takes five times as long on a worker as on the caller.
    private sealed class SlowWorker : IParallelJob
    {
        public int Items, ByCaller;

        public void Execute(int begin, int end, int worker)
        {
            Interlocked.Add(ref Items, end - begin);
            if (worker == 0) ByCaller = end - begin;
            for (int i = begin; i < end; i++) Thread.SpinWait(worker == 0 ? 20 : 100);
        }
    }

    private sealed class SlowFirstItem : IParallelJob
    {
        private int _slowWorker = -1;
        public int RunByOthers;

        public void Execute(int begin, int end, int worker)
        {
            for (int i = begin; i < end; i++)
            {
                if (i == 0)
                {
                    _slowWorker = worker;
                    Thread.Sleep(200);
                }
                else if (Volatile.Read(ref _slowWorker) != worker) Interlocked.Increment(ref RunByOthers);
                else Thread.SpinWait(50);
            }
        }
    }
}
