using System.Text;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// GGUF files modelled on the published parser bugs of llama.cpp, ggml, gguf-py and Ollama (issue 36, item 4), each
/// through the converter program: a one-line error that names the problem, exit 1, and no output file. The files are
/// written here byte by byte; the reference names the report each is modelled on.
/// </summary>
public sealed class GgufPublicPocTests
{
    // GGUF metadata value types.
    private const uint UInt8 = 0, UInt32 = 4, Int32 = 5, Float32 = 6, String = 8, Array = 9;
    private const uint F32 = 0;

    public static TheoryData<string, string> Cases() => new()
    {
        { "llama.cpp PR 18674: a dim of 2^42 + 1, whose product with the stride wraps to 0", "dim 1 = 4398046511105" },
        { "llama.cpp issue 27203: ne = (INT64_MAX, 2), a negative element count", "dim 0 = 9223372036854775807" },
        { "llama.cpp issue 25378 (gguf-py): n_dims = 1,000,000", "has 1000000 dims (1 to 4)" },
        { "llama.cpp issue 25378 (gguf-py): n_dims = 2^32 - 1", "has 4294967295 dims (1 to 4)" },
        { "llama.cpp issue 25378 (gguf-py): dims whose product wraps 2^64", "has more than 2^40 elements" },
        { "GHSA-3p75-pq92-q28f, llama.cpp PR 24263: a zero dim used as a divisor", "has dim 1 = 0" },
        { "llama.cpp PR 24263: an empty metadata key", "metadata key 0 is empty" },
        { "ggml PR 1516: a metadata string declared as 1 GiB in a tiny file", "over the 16777216 allowed" },
        { "ggml PR 1516: general.alignment 2^30", "general.alignment 1073741824 is not a power of two" },
        { "llama.cpp PR 26318: general.alignment stored as INT32 0", "general.alignment 0 is not a power of two" },
        { "llama.cpp issue 15711: a tensor count whose allocation size overflows", "tensor count 2305843009213693952" },
        { "Ollama CVE-2024-39720: a file of the 4-byte magic alone", "inside its header" },
        { "Ollama: an array count far beyond the file, sizing an allocation", "claims 1099511627776 elements" },
        { "llama.cpp: a tensor data offset past the end of the file", "not aligned to 32 inside the file" },
        { "llama.cpp: a ggml type number out of range", "has ggml type" },
        { "llama.cpp: two tensors whose data overlap", "overlap" },
        { "llama.cpp PR 26690: token scores as an array of UINT8 with the right count", "tokenizer.ggml.scores" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Public_gguf_proofs_of_concept_are_refused_with_the_problem_named(string poc, string expected)
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("poc.gguf"), Build(poc));
        var run = ProgramRunner.Run("paretoq-convert", "", [], dir.File("poc.gguf"), "-o", dir.File("out.pq"),
            "--force");
        Assert.Equal(1, run.Exit);
        Assert.True(run.Err.Trim().Split('\n').Length == 1, run.Err);
        Assert.Contains(expected, run.Err);
        Assert.False(File.Exists(dir.File("out.pq")));
    }

    private static byte[] Build(string poc)
    {
        // One tensor of the given dims after the given key/values.
        static byte[] Tensor(ulong[] dims, uint type = F32, ulong offset = 0, Action<Gguf>? kv = null, int kvs = 0,
            uint? dimCount = null)
        {
            var g = new Gguf(tensors: 1, kvs: (ulong)kvs);
            kv?.Invoke(g);
            g.Str("blk.0.attn_q.weight").U32(dimCount ?? (uint)dims.Length);
            foreach (ulong d in dims) g.U64(d);
            return g.U32(type).U64(offset).Pad(32).Zeros(128).Bytes;
        }
        return poc.Split(':')[0] switch
        {
            "llama.cpp PR 18674" => Tensor([1152, (1UL << 42) + 1]),
            "llama.cpp issue 27203" => Tensor([long.MaxValue, 2]),
            "llama.cpp issue 25378 (gguf-py)" when poc.Contains("1,000,000") => Tensor([32], dimCount: 1_000_000),
            "llama.cpp issue 25378 (gguf-py)" when poc.Contains("2^32") => Tensor([32], dimCount: uint.MaxValue),
            "llama.cpp issue 25378 (gguf-py)" => Tensor([1UL << 32, 1UL << 32]),
            "GHSA-3p75-pq92-q28f, llama.cpp PR 24263" => Tensor([32, 0]),
            "llama.cpp PR 24263" => new Gguf(tensors: 0, kvs: 1).Str("").U32(Int32).U32(1).Bytes,
            "ggml PR 1516" when poc.Contains("string") =>
                new Gguf(tensors: 0, kvs: 1).Str("general.name").U32(String).U64(1UL << 30).Zeros(100).Bytes,
            "ggml PR 1516" => Tensor([32], kv: g => g.Str("general.alignment").U32(Int32).U32(1u << 30), kvs: 1),
            "llama.cpp PR 26318" => Tensor([32], kv: g => g.Str("general.alignment").U32(Int32).U32(0), kvs: 1),
            "llama.cpp issue 15711" => new Gguf(tensors: 1UL << 61, kvs: 0).Zeros(64).Bytes,
            "Ollama CVE-2024-39720" => "GGUF"u8.ToArray(),
            "Ollama" => new Gguf(tensors: 0, kvs: 1).Str("tokenizer.ggml.tokens").U32(Array).U32(String)
                .U64(1UL << 40).Zeros(64).Bytes,
            "llama.cpp" when poc.Contains("offset") => Tensor([32], offset: 1UL << 62),
            "llama.cpp" when poc.Contains("type number") => Tensor([32], type: 1000),
            "llama.cpp" when poc.Contains("overlap") => Overlapping(),
            "llama.cpp PR 26690" => ScoresAsBytes(),
            _ => throw new ArgumentException(poc),
        };
    }

    // Two 32-float tensors whose data start 64 bytes apart: the first runs 64 bytes into the second.
    private static byte[] Overlapping()
    {
        var g = new Gguf(tensors: 2, kvs: 0);
        g.Str("blk.0.attn_q.weight").U32(1).U64(32).U32(F32).U64(0);
        g.Str("blk.0.attn_k.weight").U32(1).U64(32).U32(F32).U64(64);
        return g.Pad(32).Zeros(256).Bytes;
    }

    // A llama vocabulary whose scores are one UINT8 per token: the right count, the wrong element type.
    private static byte[] ScoresAsBytes()
    {
        string[] tokens = ["<unk>", "<s>", "</s>", "a"];
        var g = new Gguf(tensors: 0, kvs: 9);
        g.Str("general.architecture").U32(String).Str("llama");
        g.Str("tokenizer.ggml.model").U32(String).Str("llama");
        g.Str("llama.attention.layer_norm_rms_epsilon").U32(Float32).U32(BitConverter.SingleToUInt32Bits(1e-5f));
        foreach (var (key, value) in new[] { ("embedding_length", 64u), ("block_count", 1u),
            ("feed_forward_length", 128u), ("attention.head_count", 4u) })
            g.Str("llama." + key).U32(UInt32).U32(value);
        g.Str("tokenizer.ggml.tokens").U32(Array).U32(String).U64((ulong)tokens.Length);
        foreach (string t in tokens) g.Str(t);
        g.Str("tokenizer.ggml.scores").U32(Array).U32(UInt8).U64((ulong)tokens.Length).Zeros(tokens.Length);
        return g.Pad(32).Bytes;
    }

    /// <summary>A GGUF v3 file written field by field, so any field can hold any value.</summary>
    private sealed class Gguf
    {
        private readonly MemoryStream _bytes = new();
        private readonly BinaryWriter _w;

        public Gguf(ulong tensors, ulong kvs)
        {
            _w = new BinaryWriter(_bytes);
            _w.Write("GGUF"u8);
            _w.Write(3u);
            _w.Write(tensors);
            _w.Write(kvs);
        }

        public Gguf Str(string s)
        {
            byte[] b = Encoding.UTF8.GetBytes(s);
            _w.Write((ulong)b.Length);
            _w.Write(b);
            return this;
        }

        public Gguf U32(uint v)
        {
            _w.Write(v);
            return this;
        }

        public Gguf U64(ulong v)
        {
            _w.Write(v);
            return this;
        }

        public Gguf Zeros(int count)
        {
            _w.Write(new byte[count]);
            return this;
        }

        public Gguf Pad(int alignment) => Zeros((int)((alignment - _bytes.Length % alignment) % alignment));

        public byte[] Bytes => _bytes.ToArray();
    }
}
