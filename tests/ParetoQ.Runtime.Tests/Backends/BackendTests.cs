using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Backends.Reference;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

/// <summary>The CPU backends as peers: which one each option picks, the one thread-count rule, and the run state's
/// sizes.</summary>
public sealed class BackendTests
{
    [Fact]
    public void Exact_mode_is_the_reference_backend_and_the_fast_backend_refuses_it()
    {
        using (var exact = ComputeDevice.Cpu(CpuBackendOptions.ExactMode)) Assert.IsType<ReferenceBackend>(exact);
        using (var fast = ComputeDevice.Cpu(new CpuBackendOptions { Threads = 1 })) Assert.IsType<CpuBackend>(fast);
        using (var viaDevice = ComputeDevice.Create("cpu", CpuBackendOptions.ExactMode, null)) Assert.Equal("cpu-exact",
            viaDevice.Name);
        Assert.Contains("reference backend",
            Assert.Throws<ArgumentException>(() => new CpuBackend(CpuBackendOptions.ExactMode)).Message);
    }

    [Fact]
    public void Thread_counts_have_one_range_and_one_message()
    {
        Assert.Equal(Environment.ProcessorCount, ThreadCount.Check(0));
        Assert.Equal(1, ThreadCount.Check(1));
        foreach (int bad in new[] { -1, Environment.ProcessorCount + 1, 1000, int.MaxValue })
        {
            var e = Assert.Throws<ArgumentException>(() => ThreadCount.Check(bad, "--threads"));
            Assert.Equal($"--threads {bad} is outside 0..{Environment.ProcessorCount} (0 = one per core; at most one per core this process may use)", e.Message);
        }
        // The pool and both backends apply the same rule.
        Assert.Throws<ArgumentException>(() => new WorkerPool(Environment.ProcessorCount + 1));
        Assert.Throws<ArgumentException>(() => new ReferenceBackend(-1));
        using var pool = new WorkerPool(0);
        Assert.Equal(Environment.ProcessorCount, pool.Threads);
    }

    [Fact]
    public void A_session_declares_its_logit_rows_up_front()
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), TestModelGenerator.MobileLlm(), WeightFormat.Q2Seq,
            WeightFormat.F32, seed: 2);
        using var model = LanguageModel.Load(gen.Path, new CpuBackendOptions { Threads = 1 });
        int vocab = gen.Config.VocabSize;
        using var lastOnly = new Session(model, new SessionOptions { MaxBatch = 4 });
        var e = Assert.Throws<InvalidOperationException>(() => lastOnly.Forward([1, 2, 3], new float[3 * vocab]));
        Assert.Contains("SessionOptions.AllLogits", e.Message);
        Assert.Equal(0, lastOnly.Position);
        using var every = new Session(model, new SessionOptions { MaxBatch = 4, AllLogits = true });
        var logits = new float[6 * vocab];
        every.Forward([1, 2, 3, 4, 5, 6], logits); // two steps of up to four tokens
        Assert.Equal(every.Forward([7]).Length, vocab);
    }
}
