using System.Diagnostics;
using System.IO.Hashing;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.Serve;
using ParetoQ.TestModels;

namespace ParetoQ.Fuzz;

/// <summary>One input that broke the contract: the reader threw something other than its format error, ran past the
/// time bound, or allocated past the memory bound. The input is kept for replay.</summary>
public sealed record FuzzFinding(string Format, int Case, string Problem, string? SavedInput);

public sealed record FuzzReport(string Format, int Cases, int Accepted, int Refused, long MaxAllocatedBytes,
    int SeedBytes, double Seconds, IReadOnlyList<FuzzFinding> Findings);

/// <summary>An input that broke the contract under the coverage-guided harness: AFL++ records it as a crash.</summary>
public sealed class FuzzContractException(string problem) : Exception(problem);

/// <summary>One corpus file's replay: null <see cref="Problem"/> when it passed.</summary>
public sealed record ReplayResult(string Format, string File, string? Problem);

/// <summary>
/// Replays corpora: each directory holds one subdirectory per format (tests/fuzz-corpus: the minimized corpus of the
/// coverage-guided runs; tests/fuzz-findings: every input that once broke the contract), and every file in it goes
/// through <see cref="Fuzzer.Checker"/>.
/// </summary>
public static class CorpusReplay
{
    public static IReadOnlyList<ReplayResult> Run(IEnumerable<string> corpusDirectories, FuzzLimits limits)
    {
        var results = new List<ReplayResult>();
        string work = Directory.CreateTempSubdirectory("paretoq-replay-").FullName;
        try
        {
            foreach (string corpus in corpusDirectories)
                foreach (string dir in Directory.EnumerateDirectories(corpus).Order(StringComparer.Ordinal))
                {
                    string format = Path.GetFileName(dir);
                    if (!Fuzzer.Formats.Contains(format))
                    {
                        results.Add(new(format, dir,
                            $"'{format}' is not a format ({string.Join(", ", Fuzzer.Formats)})"));
                        continue;
                    }
                    var check = Fuzzer.Checker(format, Path.Combine(work, format), limits);
                    foreach (string file in Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal))
                        results.Add(new(format, file, check(File.ReadAllBytes(file))));
                }
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
        return results;
    }
}

/// <summary>The limits each case runs under.</summary>
public sealed record FuzzLimits(TimeSpan PerCase, double MemoryMultiple, long MemoryAllowance);

/// <summary>
/// Mutation fuzzing of every reader that takes untrusted bytes: .pq (model and embedded tokenizer), safetensors,
/// PyTorch zip+pickle, config.json, tokenizer.json, GGUF and llama2.c checkpoints. Each format starts from a valid file
/// made by our own writers; mutations are byte flips, truncations, splices and JSON-aware value swaps, and the
/// checksums a format carries are resealed afterwards, so the parser behind them is reached. A case passes when the
/// reader either accepts the input or refuses it with its own format exception, within the time bound and allocating
/// at most
/// <see cref="FuzzLimits.MemoryMultiple"/> × the input's size plus <see cref="FuzzLimits.MemoryAllowance"/>
/// (allocations on the reading thread, which is where every reader runs).
/// </summary>
public static class Fuzzer
{
    public static readonly string[] Formats =
        ["pq", "safetensors", "torch", "config", "tokenizer", "gguf", "llama2c", "http"];

    public static readonly FuzzLimits DefaultLimits = new(TimeSpan.FromSeconds(10), 16, 16 << 20);

    public static FuzzReport Run(string format, int cases, int seed, FuzzLimits limits, string workDirectory,
        string? findingsDirectory)
    {
        var target = Target(format, workDirectory);
        // The unmutated file must pass, or every case would be refused for the same reason and test nothing.
        File.WriteAllBytes(target.InputPath, target.Seed);
        target.Read();
        var rng = new Random(seed);
        var findings = new List<FuzzFinding>();
        int accepted = 0, refused = 0;
        long maxAllocated = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < cases; i++)
        {
            byte[] input;
            try
            {
                input = target.Mutate(rng);
            }
            catch (Exception e) when (Environment.GetEnvironmentVariable("PARETOQ_FUZZ_TRACE") is not null)
            {
                Console.Error.WriteLine(e);
                throw;
            }
            File.WriteAllBytes(target.InputPath, input);
            var outcome = RunCase(target, input.Length, limits);
            maxAllocated = Math.Max(maxAllocated, outcome.Allocated);
            if (outcome.Problem is null)
            {
                if (outcome.Accepted) accepted++;
                else refused++;
                continue;
            }
            string? saved = null;
            if (findingsDirectory is not null)
            {
                Directory.CreateDirectory(findingsDirectory);
                saved = Path.Combine(findingsDirectory,
                    $"{format}-seed{seed}-case{i}{Path.GetExtension(target.InputPath)}");
                File.WriteAllBytes(saved, input);
            }
            findings.Add(new FuzzFinding(format, i, outcome.Problem, saved));
            if (outcome.TimedOut) break; // the stuck reader still holds the file; later cases would race it
        }
        return new FuzzReport(format, cases, accepted, refused, maxAllocated, target.SeedBytes,
            clock.Elapsed.TotalSeconds, findings);
    }

    /// <summary>
    /// One format's reader as a function of an input: null when the input passes the contract (accepted, or refused
    /// with the reader's own format error, within the limits), else what broke it. The corpus replay and the
    /// coverage-guided harness both judge inputs with it. Files the reader needs beside the input (llama2c's
    /// tokenizer.bin) are the seed's.
    /// </summary>
    public static Func<byte[], string?> Checker(string format, string workDirectory, FuzzLimits limits)
    {
        var target = Target(format, workDirectory);
        return input =>
        {
            File.WriteAllBytes(target.InputPath, input);
            return RunCase(target, input.Length, limits).Problem;
        };
    }

    /// <summary>The valid file each format's cases start from, as our own writers make it.</summary>
    public static byte[] Seed(string format, string workDirectory) => Target(format, workDirectory).Seed;

    private sealed record Outcome(bool Accepted, string? Problem, long Allocated, bool TimedOut = false);

    private static Outcome RunCase(FuzzTarget target, int inputBytes, FuzzLimits limits)
    {
        long allocated = 0;
        var task = Task.Factory.StartNew(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                target.Read();
                return true;
            }
            finally
            {
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }
        }, TaskCreationOptions.LongRunning);
        try
        {
            if (!task.Wait(limits.PerCase))
                return new Outcome(false, $"no answer within {limits.PerCase.TotalSeconds:F0} s", 0, TimedOut: true);
        }
        catch (AggregateException e) when (e.InnerException is { } inner)
        {
            long bound = (long)(limits.MemoryMultiple * inputBytes) + limits.MemoryAllowance;
            if (allocated > bound)
                return new Outcome(false, $"refused, but allocated {allocated} bytes (bound {bound})", allocated);
            if (Environment.GetEnvironmentVariable("PARETOQ_FUZZ_TRACE") is not null)
                Console.Error.WriteLine(inner.Message);
            return IsFormatError(inner) ? new Outcome(false, null, allocated)
                : new Outcome(false, $"{inner.GetType().Name}: {inner.Message} at {FirstFrame(inner)}", allocated);
        }
        long limit = (long)(limits.MemoryMultiple * inputBytes) + limits.MemoryAllowance;
        return allocated > limit
            ? new Outcome(true, $"accepted, but allocated {allocated} bytes (bound {limit})", allocated)
            : new Outcome(true, null, allocated);
    }

    // The exceptions each reader documents for bad input; anything else is a defect.
    private static bool IsFormatError(Exception e) => e is PqFormatException or ModelConfigException
        or TokenizerException or CheckpointException or ApiException { Status: 400 };

    private static string FirstFrame(Exception e) =>
        e.StackTrace?.Split('\n').Select(l => l.Trim())
            .FirstOrDefault(l => l.StartsWith("at ParetoQ", StringComparison.Ordinal))
        ?? "?";

    private sealed class FuzzTarget(string inputPath, byte[] seed, Func<Random, byte[]> mutate, Action read)
    {
        public string InputPath { get; } = inputPath;
        public byte[] Seed { get; } = seed;
        public int SeedBytes => Seed.Length;
        public byte[] Mutate(Random rng) => mutate(rng);
        public void Read() => read();
    }

    private static FuzzTarget Target(string format, string dir)
    {
        Directory.CreateDirectory(dir);
        switch (format)
        {
            case "pq":
            {
                string path = Path.Combine(dir, "model.pq");
                TestModelGenerator.Write(path, TestModelGenerator.MobileLlmPro(), WeightFormat.Q2Seq,
                    WeightFormat.I8Row, seed: 1);
                byte[] valid = File.ReadAllBytes(path);
                var (meta, data) = PqBytes.Split(valid);
                return new FuzzTarget(path, valid, rng => rng.Next(8) switch
                {
                    < 3 => PqBytes.Build(Resealed(Mutations.Json(meta, rng), data), data),
                    < 7 => DataMutated(meta, data, rng),
                    _ => Mutations.Bytes(valid, rng),
                }, () =>
                {
                    using var model = LanguageModel.Load(path);
                    var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
                    tokenizer.Decode(tokenizer.Encode("Hello, fuzz", addBos: true));
                });
            }
            case "safetensors":
            {
                string path = Path.Combine(dir, "model.safetensors");
                var rng0 = new Random(1);
                byte[] valid = SafetensorsWriter.Bytes([
                    new("a.weight", SourceDType.BF16, [4, 8], TestModelGenerator.Gaussian(rng0, 32, 1)),
                    new("b.weight", SourceDType.F32, [3], TestModelGenerator.Gaussian(rng0, 3, 1)),
                    new("c.weight", SourceDType.F16, [2, 2], TestModelGenerator.Gaussian(rng0, 4, 1))],
                    new Dictionary<string, string> { ["format"] = "pt" });
                int headerLength = (int)BitConverter.ToUInt64(valid, 0);
                string header = Encoding.UTF8.GetString(valid, 8, headerLength);
                byte[] data = valid[(8 + headerLength)..];
                return new FuzzTarget(path, valid, rng => rng.Next(2) == 0
                    ? Safetensors(Mutations.Json(header, rng), data)
                    : Mutations.Bytes(valid, rng), () =>
                {
                    using var file = SafetensorsFile.Open(path);
                    foreach (var t in file.Tensors) file.ReadAll(t);
                });
            }
            case "torch":
            {
                string path = Path.Combine(dir, "pytorch_model.bin");
                var tensors = new (string, SourceDType, string, long, long[])[]
                {
                    ("a.weight", SourceDType.F32, "0", 32, [4, 8]), ("b.weight", SourceDType.BF16, "1", 3, [3]),
                };
                byte[] pickle = TorchCheckpointWriter.StateDictPickle(tensors);
                byte[][] storages = [new byte[128], new byte[6]];
                byte[] valid = TorchZip(pickle, storages);
                return new FuzzTarget(path, valid, rng => rng.Next(3) switch
                {
                    // The zip's CRCs are recomputed, so the pickle and the storage table are what the reader meets.
                    0 => TorchZip(Mutations.Bytes(pickle, rng), storages),
                    1 => TorchZip(pickle, [Mutations.Bytes(storages[0], rng), storages[1]]),
                    _ => Mutations.Bytes(valid, rng),
                }, () =>
                {
                    using var file = TorchFile.Open(path);
                    foreach (var t in file.Tensors) file.ReadAll(t);
                });
            }
            case "config":
            {
                string path = Path.Combine(dir, HfConfig.FileName);
                string valid = HfCheckpointWriter.ConfigJson("llama", HfCheckpointWriter.TinyMobileLlm(), "");
                return new FuzzTarget(path, Encoding.UTF8.GetBytes(valid), rng => rng.Next(4) == 0
                    ? Mutations.Bytes(Encoding.UTF8.GetBytes(valid), rng)
                    : Encoding.UTF8.GetBytes(Mutations.Json(valid, rng)), () => HfConfig.Read(dir));
            }
            case "tokenizer":
            {
                string path = Path.Combine(dir, "tokenizer.json");
                string valid = SmallLlamaTokenizerJson();
                return new FuzzTarget(path, Encoding.UTF8.GetBytes(valid), rng => rng.Next(4) == 0
                    ? Mutations.Bytes(Encoding.UTF8.GetBytes(valid), rng)
                    : Encoding.UTF8.GetBytes(Mutations.Json(valid, rng)), () =>
                {
                    var tokenizer = SentencePieceBpeTokenizer.FromHuggingFaceJson(File.ReadAllBytes(path), path);
                    tokenizer.Decode(tokenizer.Encode("ab a\u00e9\U0001F600", addBos: true));
                });
            }
            case "gguf":
            {
                string path = Path.Combine(dir, "model.gguf");
                byte[] valid = SmallGguf(Path.Combine(dir, "seed.gguf"));
                return new FuzzTarget(path, valid, rng => Mutations.Bytes(valid, rng), () =>
                {
                    using var file = GgufCheckpoint.Open(path);
                    file.Describe();
                    foreach (var t in file.Tensors) file.ReadAll(t);
                });
            }
            case "llama2c":
            {
                // A legacy-format checkpoint (dim 8, hidden 16, 1 layer, 2 heads, 1 KV head, vocab 4, seq_len 4)
                // and its tokenizer.bin, mutated one at a time.
                string path = Path.Combine(dir, "model.bin"), tokenizerPath = Path.Combine(dir, "tokenizer.bin");
                int[] header = [8, 16, 1, 2, 1, 4, 4];
                long floats = 4 * 8 + 8 + 8 * 8 + 2 * 4 * 8 + 8 * 8 + 8 + 3 * 16 * 8 + 8 + 2 * 4 * 2;
                var model = new byte[28 + 4 * floats];
                Buffer.BlockCopy(header, 0, model, 0, 28);
                var rng0 = new Random(1);
                Buffer.BlockCopy(TestModelGenerator.Gaussian(rng0, (int)floats, 1), 0, model, 28, 4 * (int)floats);
                var tokenizer = new MemoryStream();
                tokenizer.Write(BitConverter.GetBytes(6));
                foreach (string piece in new[] { "<unk>", "\n<s>\n", "\n</s>\n", " a" })
                {
                    tokenizer.Write(BitConverter.GetBytes(-1f));
                    tokenizer.Write(BitConverter.GetBytes(Encoding.UTF8.GetByteCount(piece)));
                    tokenizer.Write(Encoding.UTF8.GetBytes(piece));
                }
                byte[] validTokenizer = tokenizer.ToArray();
                File.WriteAllBytes(tokenizerPath, validTokenizer);
                return new FuzzTarget(path, model, rng =>
                {
                    bool damageTokenizer = rng.Next(2) == 0;
                    File.WriteAllBytes(tokenizerPath, damageTokenizer ? Mutations.Bytes(validTokenizer, rng)
                        : validTokenizer);
                    return damageTokenizer ? model : Mutations.Bytes(model, rng);
                }, () =>
                {
                    using var file = Llama2cCheckpoint.Open(path);
                    file.Describe(tokenizerPath);
                    foreach (var t in file.Tensors) file.ReadAll(t);
                });
            }
            case "http":
            {
                // A chat request body as clients send it; read as the server reads one, as a chat and as a
                // completion request.
                string path = Path.Combine(dir, "request.json");
                string valid = """
                    {"model":"stories260K","messages":[{"role":"system","content":"Be brief."},
                    {"role":"user","content":"Tell me a story about a cat."},{"role":"assistant","content":"Once"},
                    {"role":"user","content":"Go on \u00e9\ud83d\ude00"}],"max_tokens":16,"max_completion_tokens":8,
                    "temperature":0.7,"top_p":0.9,"seed":42,"n":1,"stop":["\n\n","The end"],"stream":true,
                    "stream_options":{"include_usage":true},"prompt":"Once upon a time","user":"u1"}
                    """;
                return new FuzzTarget(path, Encoding.UTF8.GetBytes(valid), rng => rng.Next(4) == 0
                    ? Mutations.Bytes(Encoding.UTF8.GetBytes(valid), rng)
                    : Encoding.UTF8.GetBytes(Mutations.Json(valid, rng)), () =>
                {
                    using var document = OpenAiRequest.ParseJson(File.ReadAllBytes(path));
                    ApiException? refused = null;
                    foreach (bool chat in (bool[])[true, false])
                        try
                        {
                            OpenAiRequest.Parse(document.RootElement, chat);
                        }
                        catch (ApiException e)
                        {
                            refused ??= e;
                        }
                    if (refused is not null) throw refused;
                });
            }
            default:
                throw new ArgumentException($"unknown format '{format}' (expected {string.Join(", ", Formats)})");
        }
    }

    /// <summary>A small llama GGUF with a tensor of every block type the importer reads, written by our own
    /// writer.</summary>
    private static byte[] SmallGguf(string path)
    {
        var rng = new Random(2);
        var gguf = new GgufWriter();
        gguf.Add("general.architecture", "llama");
        gguf.Add("llama.embedding_length", 256u);
        gguf.Add("llama.block_count", 1u);
        gguf.Add("llama.feed_forward_length", 32u);
        gguf.Add("llama.attention.head_count", 4u);
        gguf.Add("llama.attention.head_count_kv", 2u);
        gguf.Add("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        gguf.Add("llama.context_length", 64u);
        gguf.Add("tokenizer.ggml.model", "llama");
        gguf.Add("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "▁a", "b", "▁ab", "<0x0A>", "c"]);
        gguf.Add("tokenizer.ggml.scores", [0f, 0f, 0f, -1f, -2f, -3f, 0f, -4f]);
        gguf.Add("tokenizer.ggml.token_type", [2, 3, 3, 1, 1, 1, 6, 1]);
        gguf.Add("tokenizer.ggml.bos_token_id", 1u);
        gguf.Add("tokenizer.ggml.eos_token_id", 2u);
        void Add(string name, GgmlType type, long cols, long rows)
        {
            var bytes = new byte[GgmlTypes.RowBytes(type, cols) * rows];
            if (GgmlTypes.IsFloat(type))
            {
                var values = TestModelGenerator.Gaussian(rng, (int)(cols * rows), 0.1f);
                for (int i = 0; i < values.Length; i++)
                {
                    if (type == GgmlType.F32) BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), values[i]);
                    else if (type == GgmlType.F16) BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), (Half)values[i]);
                    else BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), FloatCodec.SingleToBf16(values[i]));
                }
            }
            else
            {
                rng.NextBytes(bytes);
                // Each block's fp16 scales (at its end, or its start for Q4_0/Q8_0) set to a small normal value.
                int size = GgmlTypes.Block(type).Bytes;
                int[] scaleAt = type switch { GgmlType.Q2_K => [80, 82], GgmlType.Q4_0 or GgmlType.Q8_0 => [0],
                    _ => [size - 2] };
                for (long b = 0; b < bytes.Length / size; b++)
                    foreach (int at in scaleAt)
                        BitConverter.TryWriteBytes(bytes.AsSpan((int)(b * size + at)), (Half)0.01f);
            }
            gguf.AddTensor(name, type, rows == 1 ? [cols] : [cols, rows], () => bytes);
        }
        Add("token_embd.weight", GgmlType.Q8_0, 256, 8);
        Add("blk.0.attn_norm.weight", GgmlType.F32, 256, 1);
        Add("blk.0.attn_q.weight", GgmlType.TQ2_0, 256, 256);
        Add("blk.0.attn_k.weight", GgmlType.TQ1_0, 256, 128);
        Add("blk.0.attn_v.weight", GgmlType.Q2_K, 256, 128);
        Add("blk.0.attn_output.weight", GgmlType.Q4_0, 256, 256);
        Add("blk.0.ffn_norm.weight", GgmlType.F32, 256, 1);
        Add("blk.0.ffn_gate.weight", GgmlType.F16, 256, 32);
        Add("blk.0.ffn_up.weight", GgmlType.BF16, 256, 32);
        Add("blk.0.ffn_down.weight", GgmlType.Q8_0, 32, 256);
        Add("output_norm.weight", GgmlType.F32, 256, 1);
        gguf.Write(path, overwrite: true);
        return File.ReadAllBytes(path);
    }

    // Damage to the data section (tensors, scales, the embedded tokenizer) with every checksum recomputed, so the
    // scale checks and the tokenizer parser see it.
    private static byte[] DataMutated(string meta, byte[] data, Random rng)
    {
        byte[] damaged = Mutations.Bytes(data, rng);
        if (damaged.Length != data.Length) return PqBytes.Build(meta, damaged);
        return PqBytes.Build(Resealed(meta, damaged), damaged);
    }

    // The metadata with each tensor's and the tokenizer's xxh3 recomputed over the bytes it names (where the JSON
    // still parses and the range lies inside the data).
    private static string Resealed(string meta, byte[] data)
    {
        try
        {
            return ResealedEntries(meta, data);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            return meta; // a lone surrogate escape or a repeated field the mutation put in: keep the text as written
        }
    }

    private static string ResealedEntries(string meta, byte[] data)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(meta); }
        catch (JsonException) { return meta; }
        if (root is not JsonObject obj) return meta;
        IEnumerable<JsonNode?> entries = obj["tensors"] is JsonArray tensors ? tensors : [];
        foreach (var entry in entries.Append(obj["tokenizer"]))
        {
            try
            {
                if (entry is not JsonObject e || e["offset"]?.GetValue<long>() is not long offset
                    || e["length"]?.GetValue<long>() is not long length) continue;
                if (offset < 0 || length < 0 || offset > data.Length || length > data.Length - offset) continue;
                e["xxh3"] = XxHash3.HashToUInt64(data.AsSpan((int)offset, (int)length)).ToString("x16");
            }
            catch (Exception ex) when (ex is InvalidOperationException or FormatException)
            {
                // a mutated field of the wrong kind: leave this entry as the mutation made it
            }
        }
        return obj.ToJsonString(new JsonSerializerOptions { WriteIndented = true,
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    private static byte[] Safetensors(string header, byte[] data)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        return [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. data];
    }

    private static byte[] TorchZip(byte[] pickle, byte[][] storages) => TorchCheckpointWriter.Zip([
        ("archive/data.pkl", pickle), .. storages.Select((s, i) => ($"archive/data/{i}", s)),
        ("archive/byteorder", "little"u8.ToArray()), ("archive/version", "3\n"u8.ToArray())]);

    /// <summary>A LLaMA-style byte-fallback BPE tokenizer.json small enough to fuzz thousands of times.</summary>
    public static string SmallLlamaTokenizerJson()
    {
        var vocab = new List<string> { "<unk>", "<s>", "</s>" };
        for (int b = 0; b < 256; b++) vocab.Add($"<0x{b:X2}>");
        vocab.AddRange(["▁", "a", "b", "ab", "▁a", "▁ab"]);
        var sb = new StringBuilder();
        sb.Append("{\n  \"version\": \"1.0\",\n  \"added_tokens\": [\n");
        for (int i = 0; i < 3; i++)
            sb.Append($"    {{\"id\": {i}, \"content\": \"{vocab[i]}\", \"special\": true}}{(i < 2 ? "," : "")}\n");
        sb.Append("""
              ],
              "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
              "pre_tokenizer": null,
              "model": {
                "type": "BPE",
                "byte_fallback": true,
                "unk_token": "<unk>",
                "vocab": {

            """);
        for (int i = 0; i < vocab.Count; i++)
            sb.Append($"      \"{vocab[i]}\": {i}{(i < vocab.Count - 1 ? "," : "")}\n");
        sb.Append("    },\n    \"merges\": [\n      \"a b\",\n      \"▁ a\",\n      \"▁a b\"\n    ]\n  }\n}\n");
        return sb.ToString();
    }
}

/// <summary>The mutations, shared by every format.</summary>
internal static class Mutations
{
    // Values that have broken JSON readers: huge, negative, fractional and non-finite-looking numbers, wrong kinds, a
    // lone surrogate escape, a NUL and a long string.
    private static readonly string[] AwkwardValues = ["0", "-1", "1", "64", "1e300", "-1e300", "0.5", "4294967296",
        "268435456", "2147483647", "9223372036854775807", "18446744073709551617", "null", "true", "false", "\"\"",
        "[]", "{}", "[1, 1]", "[[[[[[[[]]]]]]]]", "\"\\ud800\"", "\"\\udc00x\"", "\"x\\u0000\"", "\"q2_seq\"",
        "\"" + new string('a', 5000) + "\""];

    public static string Json(string json, Random rng)
    {
        var sb = new StringBuilder(json);
        for (int k = rng.Next(1, 4); k > 0 && sb.Length > 40; k--)
        {
            int at = rng.Next(sb.Length);
            switch (rng.Next(5))
            {
                case 0: sb[at] = (char)rng.Next(32, 127); break;
                case 1: sb.Remove(at, Math.Min(rng.Next(1, 20), sb.Length - at)); break;
                case 2: sb.Insert(at, json.AsSpan(rng.Next(json.Length - 30), 30)); break;
                case 3: sb.Insert(at, "\\ud800"); break;
                default:
                {
                    // Replace one value (the text after a colon) with an awkward one.
                    int colon = sb.ToString().IndexOf(':', at);
                    if (colon < 0) break;
                    int start = colon + 1, end = start;
                    while (end < sb.Length && sb[end] is not (',' or '\n' or '}' or ']')) end++;
                    sb.Remove(start, end - start).Insert(start, " " + AwkwardValues[rng.Next(AwkwardValues.Length)]);
                    break;
                }
            }
        }
        return sb.ToString();
    }

    public static byte[] Bytes(byte[] valid, Random rng)
    {
        byte[] bad = (byte[])valid.Clone();
        switch (rng.Next(5))
        {
            case 0:
                for (int k = rng.Next(1, 9); k > 0; k--) bad[rng.Next(bad.Length)] ^= (byte)(1 << rng.Next(8));
                return bad;
            case 1:
                for (int k = rng.Next(1, 5); k > 0; k--) bad[rng.Next(bad.Length)] = (byte)rng.Next(256);
                return bad;
            case 2:
                return bad[..rng.Next(bad.Length)];
            case 3:
            {
                // Splice a copy of one range into another place (repeats opcodes, headers, lengths).
                int from = rng.Next(bad.Length), length = Math.Min(rng.Next(1, 64), bad.Length - from);
                int to = rng.Next(bad.Length);
                return [.. bad[..to], .. bad.AsSpan(from, length), .. bad[to..]];
            }
            default:
            {
                // An extreme integer written over a random place: lengths, counts and offsets.
                long[] extremes = [0, -1, int.MaxValue, uint.MaxValue, long.MaxValue, 1L << 62, (1L << 62) + 16];
                int at = rng.Next(Math.Max(1, bad.Length - 8));
                BitConverter.TryWriteBytes(bad.AsSpan(at, Math.Min(8, bad.Length - at)),
                    extremes[rng.Next(extremes.Length)]);
                return bad;
            }
        }
    }
}
