using System.Runtime.InteropServices;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;

namespace ParetoQ.Native;

/// <summary>
/// One conversation behind a pq_context handle: its own CPU backend (worker threads), a model view over the shared
/// memory map, a session (KV cache), the tokens fed so far and the last logits in native memory for pq_get_logits.
/// A call marks the context busy with its thread (<see cref="BusyThread"/>); any other call meanwhile, from another
/// thread or from a callback of the running one, is refused rather than run.
/// </summary>
internal sealed unsafe class NativeContext : IDisposable
{
    public NativeModel Model { get; }
    public Session Session { get; }
    public List<int> History { get; } = [];
    /// <summary>The managed id of the thread running a call on this context; 0 when idle.</summary>
    public int BusyThread;
    public float* Logits { get; }
    public bool HasLogits { get; set; }
    /// <summary>Set by pq_context_free: for a call that found the handle just before it went, and for a free from
    /// inside a running call's callback (that call disposes the context when it returns).</summary>
    public bool Disposed { get; set; }
    private readonly HostBackend _backend;
    private readonly LanguageModel _view;
    private Sampler? _sampler;
    private SamplerOptions? _samplerOptions;

    public NativeContext(NativeModel model, CpuBackendOptions backend, SessionOptions session)
    {
        Model = model;
        _backend = ComputeDevice.Cpu(backend);
        try
        {
            _view = new LanguageModel(model.File, _backend);
            Session = new Session(_view, session);
            Logits = (float*)NativeMemory.AlignedAlloc((nuint)model.Config.VocabSize * sizeof(float), 64);
        }
        catch
        {
            _backend.Dispose();
            throw;
        }
    }

    /// <summary>The sampler for these options, kept across calls so its random stream continues; new options restart
    /// it.</summary>
    public Sampler SamplerFor(SamplerOptions options)
    {
        if (_sampler is null || _samplerOptions != options)
        {
            _sampler = new Sampler(Model.Config.VocabSize, options);
            _samplerOptions = options;
        }
        return _sampler;
    }

    private int _released;

    /// <summary>Releases the context once; later calls do nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0) return;
        Session.Dispose();
        _view.Dispose();
        _backend.Dispose();
        NativeMemory.AlignedFree(Logits);
        Model.Release();
    }
}
