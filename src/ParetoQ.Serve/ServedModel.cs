using System.Threading.Channels;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Serve;

/// <summary>
/// One memory-mapped model and <c>parallel</c> sessions over it (each with its own KV cache and scratch). A request
/// is admitted before its body is read (at most <c>parallel + queue</c> at once; beyond that it is refused with 503),
/// then leases a session, waiting while all are busy. Memory and waiting time stay bounded whatever the load.
/// </summary>
public sealed class ServedModel : IDisposable
{
    private readonly LanguageModel _model;
    private readonly Session[] _sessions;
    private readonly Channel<Session> _idle;
    private readonly int _admissionLimit;
    private int _admitted;

    public string Id { get; }
    public ITokenizer Tokenizer { get; }
    public IReadOnlyList<int> EosIds { get; }
    public ChatTemplate ChatTemplate { get; }
    public int ContextLength => _sessions[0].ContextLength;
    public long Created { get; }

    public ServedModel(string path, int parallel, int queueLength, int contextLength, int threads)
    {
        if (parallel < 1) throw new ArgumentException($"--parallel {parallel} must be at least 1");
        if (queueLength < 0) throw new ArgumentException($"--queue {queueLength} must be ≥ 0");
        _model = LanguageModel.Load(path, new CpuBackendOptions { Threads = threads });
        try
        {
            Tokenizer = Tokenizers.FromFile(_model.File, _model.Config.VocabSize);
            _sessions = new Session[parallel];
            for (int i = 0; i < parallel; i++)
                _sessions[i] = new Session(_model,
                    new ParetoQ.Runtime.Model.SessionOptions { ContextLength = contextLength });
        }
        catch
        {
            foreach (var s in _sessions ?? []) s?.Dispose();
            _model.Dispose();
            throw;
        }
        _idle = Channel.CreateBounded<Session>(parallel);
        foreach (var s in _sessions) _idle.Writer.TryWrite(s);
        _admissionLimit = parallel + queueLength;
        Id = System.IO.Path.GetFileNameWithoutExtension(path);
        EosIds = _model.File.Tokenizer.EosIds;
        ChatTemplate = ChatTemplate.For(Tokenizer, _model.File.Tokenizer);
        Created = new DateTimeOffset(File.GetLastWriteTimeUtc(path)).ToUnixTimeSeconds();
        Span<byte> piece = stackalloc byte[ITokenizer.MaxTokenBytes];
        for (int id = 0; id < Tokenizer.VocabSize; id++)
            MaxTokenBytes = Math.Max(MaxTokenBytes, Tokenizer.TokenBytes(id, piece));
        MaxTokenBytes = Math.Max(1, MaxTokenBytes);
    }

    /// <summary>
    /// Admits one request before its body is read, or returns null when <c>parallel + queue</c> requests are already
    /// admitted: a request's body, parsed JSON, text and token ids exist only while it holds an admission, so they
    /// are bounded by the options (docs/RELIABILITY.md).
    /// </summary>
    public Admission? TryAdmit()
    {
        if (Interlocked.Increment(ref _admitted) <= _admissionLimit) return new Admission(this);
        Interlocked.Decrement(ref _admitted);
        return null;
    }

    /// <summary>The most UTF-8 bytes any one token of this model's vocabulary decodes to: a prompt longer than this
    /// many bytes per context position cannot fit, and is refused before it is tokenized.</summary>
    public int MaxTokenBytes { get; }

    /// <summary>One admitted request; disposing it gives the place back.</summary>
    public sealed class Admission(ServedModel owner) : IDisposable
    {
        private int _disposed;

        /// <summary>Waits for an idle session; the lease hands it back.</summary>
        public async ValueTask<Lease> LeaseAsync(CancellationToken cancellation) =>
            new(owner, await owner._idle.Reader.ReadAsync(cancellation));

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) Interlocked.Decrement(ref owner._admitted);
        }
    }

    /// <summary>A leased session, reset and handed back on dispose.</summary>
    public sealed class Lease(ServedModel owner, Session session) : IDisposable
    {
        public Session Session { get; } = session;

        public void Dispose()
        {
            Session.Reset();
            owner._idle.Writer.TryWrite(Session);
        }
    }

    public void Dispose()
    {
        foreach (var s in _sessions) s.Dispose();
        _model.Dispose();
    }
}
