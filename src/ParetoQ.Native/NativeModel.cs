using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Native;

/// <summary>
/// A loaded .pq file behind a pq_model handle: the memory map, its config and tokenizer. Immutable, so any thread may
/// use it. Contexts hold references: the file is unmapped when the handle is freed and the last context is gone.
/// </summary>
internal sealed class NativeModel
{
    public PqFile File { get; }
    public ModelConfig Config { get; }
    public ITokenizer Tokenizer { get; }
    public long Parameters { get; }
    private int _references = 1; // the handle's own

    public NativeModel(string path, bool verifyChecksums)
    {
        File = PqFile.Open(path, verifyChecksums, WeightMemory.Auto); // resident in huge pages where that decodes faster
        try
        {
            // A full load on a one-thread backend validates every tensor against the config before the handle exists.
            using (var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 }))
            using (var model = new LanguageModel(File, backend))
                Config = model.Config;
            Tokenizer = Tokenizers.FromFile(File, Config.VocabSize);
            Parameters = File.Tensors.Sum(t => t.ElementCount);
        }
        catch
        {
            File.Dispose();
            throw;
        }
    }

    /// <summary>Takes a reference for a new context; false once the model is being released.</summary>
    public bool TryAddReference()
    {
        for (int n = Volatile.Read(ref _references); n > 0; n = Volatile.Read(ref _references))
            if (Interlocked.CompareExchange(ref _references, n + 1, n) == n) return true;
        return false;
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0) File.Dispose();
    }
}
