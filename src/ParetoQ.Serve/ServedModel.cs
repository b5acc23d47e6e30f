using System.Threading.Channels;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Serve;

/// <summary>
/// One memory-mapped model and <c>parallel</c> sessions over it (each with its own KV cache and scratch). A request
/// leases a session; when all are busy it waits in a queue of bounded length, and beyond that it is refused (503), so
/// memory and waiting time stay bounded whatever the load.
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
    }

    /// <summary>A session for one request, or null when every session is busy and the queue is full.</summary>
    public async ValueTask<Lease?> TryLeaseAsync(CancellationToken cancellation)
    {
        if (Interlocked.Increment(ref _admitted) > _admissionLimit)
        {
            Interlocked.Decrement(ref _admitted);
            return null;
        }
        try
        {
            return new Lease(this, await _idle.Reader.ReadAsync(cancellation));
        }
        catch
        {
            Interlocked.Decrement(ref _admitted);
            throw;
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
            Interlocked.Decrement(ref owner._admitted);
        }
    }

    public void Dispose()
    {
        foreach (var s in _sessions) s.Dispose();
        _model.Dispose();
    }
}
