using System.Runtime.InteropServices;
using System.Text;
using ParetoQ.Abi;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Native;

/// <summary>
/// The functions native/include/paretoq.h declares. Each one validates its arguments, runs inside a catch-all that
/// turns any exception into a pq_status and a pq_last_error message, and never lets anything cross into C.
/// </summary>
public static unsafe class Exports
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    [UnmanagedCallersOnly(EntryPoint = "pq_abi_version")]
    public static uint AbiVersion() => PqAbi.Version;

    [UnmanagedCallersOnly(EntryPoint = "pq_version_string")]
    public static byte* VersionString() => s_version;

    // The version is the one Directory.Build.props sets for every package. The kernel path names the build variant
    // that got loaded (avx512gfni/avx512 come only from the x86-64-v4 one).
    private static readonly byte* s_version = Errors.Persistent(
        $"ParetoQ.Runtime {typeof(Exports).Assembly.GetName().Version!.ToString(3)} (abi {PqAbi.Version}, " +
        $"kernels {KernelDispatch.Name(KernelDispatch.Widest)})");

    [UnmanagedCallersOnly(EntryPoint = "pq_last_error")]
    public static byte* LastError() => Errors.Message;

    [UnmanagedCallersOnly(EntryPoint = "pq_model_default_params")]
    public static PqModelParams ModelDefaultParams() => DefaultModelParams;

    [UnmanagedCallersOnly(EntryPoint = "pq_context_default_params")]
    public static PqContextParams ContextDefaultParams() => DefaultContextParams;

    [UnmanagedCallersOnly(EntryPoint = "pq_sampler_default_params")]
    public static PqSamplerParams SamplerDefaultParams() => DefaultSamplerParams;

    private static PqModelParams DefaultModelParams
        => new() { Size = (uint)sizeof(PqModelParams), VerifyChecksums = 1 };
    private static PqContextParams DefaultContextParams
        => new() { Size = (uint)sizeof(PqContextParams), KvType = (int)PqKvType.Int8 };

    private static PqSamplerParams DefaultSamplerParams
    {
        get
        {
            var o = new SamplerOptions();
            return new PqSamplerParams
            {
                Size = (uint)sizeof(PqSamplerParams), Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP,
                    MinP = o.MinP,
                RepeatPenalty = o.RepeatPenalty, RepeatLastN = o.RepeatWindow, Seed = o.Seed,
            };
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_model_load")]
    public static int ModelLoad(byte* path, PqModelParams* parameters, nint* outModel)
    {
        const string F = "pq_model_load";
        try
        {
            if (outModel == null) return Errors.Set(PqStatus.InvalidArgument, F, "out_model is null");
            *outModel = 0;
            var p = parameters == null ? DefaultModelParams : *parameters;
            CheckSize(p.Size, sizeof(PqModelParams), "pq_model_params", "pq_model_default_params");
            if (p.VerifyChecksums is not (0
                or 1)) throw new ArgumentException($"verify_checksums is {p.VerifyChecksums}; use 0 or 1");
            string file = Text(path, -1, "path");
            if (!File.Exists(file)) return Errors.Set(PqStatus.IO, F, $"model file '{file}' does not exist");
            *outModel = HandleTable.Add(new NativeModel(file, p.VerifyChecksums == 1));
            return (int)PqStatus.Ok;
        }
        catch (Exception e) { return Errors.From(F, e); }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_model_free")]
    public static void ModelFree(nint model)
    {
        try { HandleTable.Remove<NativeModel>(model)?.Release(); }
        catch (Exception e) { Errors.From("pq_model_free", e); }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_model_get_info")]
    public static int ModelGetInfo(nint model, PqModelInfo* info)
    {
        const string F = "pq_model_get_info";
        try
        {
            if (HandleTable.Get<NativeModel>(model) is not { } m) return Errors.NoHandle(F, "model");
            if (info == null) return Errors.Set(PqStatus.InvalidArgument, F, "out_info is null");
            CheckSize(info->Size, sizeof(PqModelInfo), "pq_model_info", "sizeof(pq_model_info)");
            var c = m.Config;
            var t = m.File.Tokenizer;
            var result = new PqModelInfo
            {
                Size = (uint)sizeof(PqModelInfo), VocabSize = c.VocabSize, MaxContext = c.MaxPositionEmbeddings,
                    Layers = c.EffectiveLayers,
                HiddenSize = c.HiddenSize, BosId = t.BosId, EosId = t.EosIds.Count > 0 ? t.EosIds[0] : -1,
                FileBytes = m.File.FileLength, Parameters = m.Parameters,
            };
            CopyText(c.Architecture, new Span<byte>(result.Architecture, 32));
            CopyText(m.File.Provenance.Bits, new Span<byte>(result.Bits, 16));
            *info = result;
            return (int)PqStatus.Ok;
        }
        catch (Exception e) { return Errors.From(F, e); }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_context_new")]
    public static int ContextNew(nint model, PqContextParams* parameters, nint* outContext)
    {
        const string F = "pq_context_new";
        try
        {
            if (outContext == null) return Errors.Set(PqStatus.InvalidArgument, F, "out_context is null");
            *outContext = 0;
            if (HandleTable.Get<NativeModel>(model) is not { } m || !m.TryAddReference()) return Errors.NoHandle(F,
                "model");
            try
            {
                var p = parameters == null ? DefaultContextParams : *parameters;
                CheckSize(p.Size, sizeof(PqContextParams), "pq_context_params", "pq_context_default_params");
                ThreadCount.Check(p.Threads);
                if (p.ContextLength < 0) throw new ArgumentException($"context_length {p.ContextLength} is negative");
                if (p.KvType is not ((int)PqKvType.Int8
                    or (int)PqKvType.F32)) throw new ArgumentException($"kv_type {p.KvType} is not PQ_KV_INT8 (0) or PQ_KV_F32 (1)");
                if (p.Exact is not (0 or 1)) throw new ArgumentException($"exact is {p.Exact}; use 0 or 1");
                var context = new NativeContext(m,
                    new CpuBackendOptions { Threads = p.Threads, Exact = p.Exact == 1 },
                    new SessionOptions { ContextLength = p.ContextLength, KvCache = p.KvType == (int)PqKvType.F32
                        ? KvCacheType.F32 : KvCacheType.Int8 });
                *outContext = HandleTable.Add(context);
                return (int)PqStatus.Ok;
            }
            catch
            {
                m.Release();
                throw;
            }
        }
        catch (Exception e) { return Errors.From(F, e); }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_context_free")]
    public static void ContextFree(nint context)
    {
        try
        {
            if (HandleTable.Remove<NativeContext>(context) is not { } c) return;
            int me = Environment.CurrentManagedThreadId;
            if (Volatile.Read(ref c.BusyThread) == me)
            {
                c.Disposed = true; // freed from a callback of its own running call, which disposes it on return
                return;
            }
            var wait = new SpinWait();
            // a call on another thread finishes first
            while (Interlocked.CompareExchange(ref c.BusyThread, me, 0) != 0) wait.SpinOnce();
            c.Disposed = true;
            c.Dispose();
        }
        catch (Exception e) { Errors.From("pq_context_free", e); }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_context_reset")]
    public static int ContextReset(nint context) => OnContext("pq_context_reset", context, c =>
    {
        c.Session.Reset();
        c.History.Clear();
        c.HasLogits = false;
        return (int)PqStatus.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "pq_context_position")]
    public static int ContextPosition(nint context)
        => OnContext("pq_context_position", context, c => c.Session.Position);

    [UnmanagedCallersOnly(EntryPoint = "pq_context_length")]
    public static int ContextLength(nint context)
        => OnContext("pq_context_length", context, c => c.Session.ContextLength);

    [UnmanagedCallersOnly(EntryPoint = "pq_tokenize")]
    public static int Tokenize(nint model, byte* text, int textLength, int addBos, int* tokens, int capacity)
    {
        const string F = "pq_tokenize";
        try
        {
            if (HandleTable.Get<NativeModel>(model) is not { } m) { Errors.NoHandle(F,
                "model"); return PqAbi.SizeError; }
            CheckBuffer(tokens, capacity, "tokens");
            int[] ids = m.Tokenizer.Encode(Text(text, textLength, "text"), addBos != 0);
            if (ids.Length > capacity) return -ids.Length;
            ids.CopyTo(new Span<int>(tokens, capacity));
            return ids.Length;
        }
        catch (Exception e) { Errors.From(F, e); return PqAbi.SizeError; }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_detokenize")]
    public static int Detokenize(nint model, int* tokens, int count, byte* text, int capacity)
    {
        const string F = "pq_detokenize";
        try
        {
            if (HandleTable.Get<NativeModel>(model) is not { } m) { Errors.NoHandle(F,
                "model"); return PqAbi.SizeError; }
            var ids = Tokens(tokens, count, m.Config.VocabSize, allowEmpty: true);
            CheckBuffer(text, capacity, "text");
            byte[] utf8 = Encoding.UTF8.GetBytes(m.Tokenizer.Decode(ids));
            if (utf8.Length + 1 > capacity) return -(utf8.Length + 1);
            utf8.CopyTo(new Span<byte>(text, capacity));
            text[utf8.Length] = 0;
            return utf8.Length;
        }
        catch (Exception e) { Errors.From(F, e); return PqAbi.SizeError; }
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_decode")]
    public static int Decode(nint context, int* tokens, int count) => OnContext("pq_decode", context, c =>
    {
        var ids = Tokens(tokens, count, c.Model.Config.VocabSize, allowEmpty: false);
        var logits = c.Session.Forward(ids);
        logits.CopyTo(new Span<float>(c.Logits, logits.Length));
        c.HasLogits = true;
        c.History.AddRange(ids);
        return (int)PqStatus.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "pq_get_logits")]
    public static float* GetLogits(nint context, int* outCount)
    {
        float* result = null;
        int status = OnContext("pq_get_logits", context, c =>
        {
            if (!c.HasLogits) return Errors.Set(PqStatus.InvalidArgument, "pq_get_logits",
                "no logits: feed tokens with pq_decode first (pq_generate and pq_context_reset leave none)");
            if (outCount != null) *outCount = c.Model.Config.VocabSize;
            result = c.Logits;
            return (int)PqStatus.Ok;
        });
        return status == (int)PqStatus.Ok ? result : null;
    }

    [UnmanagedCallersOnly(EntryPoint = "pq_sample")]
    public static int Sample(nint context, PqSamplerParams* parameters) => OnContext("pq_sample", context, c =>
    {
        if (!c.HasLogits) return Errors.Set(PqStatus.InvalidArgument, "pq_sample",
            "no logits to sample from: feed tokens with pq_decode first");
        var sampler = c.SamplerFor(SamplerOptions(parameters));
        return sampler.Sample(new ReadOnlySpan<float>(c.Logits, c.Model.Config.VocabSize),
            CollectionsMarshal.AsSpan(c.History));
    });

    [UnmanagedCallersOnly(EntryPoint = "pq_generate")]
    public static int Generate(nint context, byte* prompt, int promptLength, PqSamplerParams* parameters, int maxTokens,
        delegate* unmanaged<byte*, int, void*, int> callback, void* userData, PqGenerationStats* stats)
            => OnContext("pq_generate", context, c =>
    {
        if (stats != null) CheckSize(stats->Size, sizeof(PqGenerationStats), "pq_generation_stats",
            "sizeof(pq_generation_stats)");
        if (maxTokens < 0) throw new ArgumentException($"max_tokens {maxTokens} is negative");
        var options = new GenerationOptions { MaxTokens = maxTokens, Sampler = SamplerOptions(parameters),
            EosIds = c.Model.File.Tokenizer.EosIds };
        int[] ids = c.Model.Tokenizer.Encode(Text(prompt, promptLength, "prompt"), addBos: c.Session.Position == 0);
        if (ids.Length == 0) throw new ArgumentException("the prompt is empty");
        using var cancel = new CancellationTokenSource();
        Action<string>? onText = callback == null ? null : piece =>
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(piece);
            fixed (byte* p = utf8)
                if (callback(p, utf8.Length, userData) != 0) cancel.Cancel();
        };
        c.HasLogits = false;
        var result = new Generator(c.Session, c.Model.Tokenizer).Generate(ids, options, onText, cancel.Token);
        c.History.AddRange(ids);
        c.History.AddRange(result.Tokens);
        if (stats != null)
            *stats = new PqGenerationStats
            {
                Size = (uint)sizeof(PqGenerationStats), PromptTokens = result.PromptTokens,
                    GeneratedTokens = result.GeneratedTokens,
                StopReason = (int)result.Reason, PrefillTokensPerSecond = result.PrefillTokensPerSecond,
                    DecodeTokensPerSecond = result.DecodeTokensPerSecond,
            };
        return (int)PqStatus.Ok;
    });

    // Runs body on a live context, one call at a time: an overlapping call (another thread's, or a callback's re-entry)
    // gets PQ_ERR_BUSY, a freed context PQ_ERR_INVALID_HANDLE.
    private static int OnContext(string function, nint context, Func<NativeContext, int> body)
    {
        try
        {
            if (HandleTable.Get<NativeContext>(context) is not { } c) return Errors.NoHandle(function, "context");
            if (Interlocked.CompareExchange(ref c.BusyThread, Environment.CurrentManagedThreadId, 0) != 0)
                return Errors.Set(PqStatus.Busy, function,
                    "another call on this context is running (a context belongs to one thread at a time, and callbacks may not call into their own context)");
            try
            {
                return c.Disposed ? Errors.NoHandle(function, "context") : body(c);
            }
            finally
            {
                if (c.Disposed) c.Dispose(); // it was freed from inside this call
                Volatile.Write(ref c.BusyThread, 0);
            }
        }
        catch (Exception e) { return Errors.From(function, e); }
    }

    private static SamplerOptions SamplerOptions(PqSamplerParams* parameters)
    {
        var p = parameters == null ? DefaultSamplerParams : *parameters;
        CheckSize(p.Size, sizeof(PqSamplerParams), "pq_sampler_params", "pq_sampler_default_params");
        var options = new SamplerOptions
        {
            Temperature = p.Temperature, TopK = p.TopK, TopP = p.TopP, MinP = p.MinP, RepeatPenalty = p.RepeatPenalty,
                RepeatWindow = p.RepeatLastN, Seed = p.Seed,
        };
        options.Validate();
        return options;
    }

    private static void CheckSize(uint size, int expected, string type, string source)
    {
        if (size != expected) throw new ArgumentException($"{type}.size is {size}, this library's is {expected} (initialize it with {source}, and build against this library's paretoq.h)");
    }

    private static void CheckBuffer(void* buffer, int capacity, string name)
    {
        if (capacity < 0) throw new ArgumentException($"{name} capacity {capacity} is negative");
        if (buffer == null
            && capacity > 0) throw new ArgumentException($"{name} is null but its capacity is {capacity}");
    }

    private static int[] Tokens(int* tokens, int count, int vocab, bool allowEmpty)
    {
        if (count < 0
            || (count == 0
            && !allowEmpty)) throw new ArgumentException($"token count {count} must be {(allowEmpty ? "≥ 0" : "≥ 1")}");
        if (tokens == null && count > 0) throw new ArgumentException("tokens is null");
        var ids = new ReadOnlySpan<int>(tokens, count).ToArray();
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)vocab) throw new TokenizerException("tokens",
                $"token {i} is {ids[i]}, outside the vocabulary (0..{vocab - 1})");
        return ids;
    }

    /// <summary>UTF-8 text from C: <paramref name="length"/> bytes, or up to the NUL when −1; invalid UTF-8 is
    /// refused.</summary>
    private static string Text(byte* text, int length, string name)
    {
        if (text == null && length == 0) return "";
        if (text == null) throw new ArgumentException($"{name} is null");
        if (length < -1) throw new ArgumentException($"{name} length {length} is invalid (−1 means NUL-terminated)");
        var bytes = length == -1 ? MemoryMarshal.CreateReadOnlySpanFromNullTerminated(text)
            : new ReadOnlySpan<byte>(text, length);
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException e) { throw new TokenizerException(name,
            $"is not valid UTF-8 (byte {e.Index})"); }
    }

    // NUL-terminated, truncated to fit (the fields hold short ASCII names).
    private static void CopyText(string value, Span<byte> destination)
    {
        destination.Clear();
        byte[] utf8 = Encoding.UTF8.GetBytes(value);
        utf8.AsSpan(0, Math.Min(utf8.Length, destination.Length - 1)).CopyTo(destination);
    }
}
