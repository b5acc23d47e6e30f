using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Quantization;
using static ParetoQ.TestModels.SafetensorsWriter;

namespace ParetoQ.Runtime.Tests;

public sealed class SafetensorsTests
{
    internal static float[] Values(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
    }

    [Fact]
    public void Reads_every_dtype_back_as_written()
    {
        using var dir = new TempDir();
        var f32 = Values(3 * 5, 1);
        var f16 = Values(7, 2);
        var bf16 = Values(2 * 3 * 4, 3);
        Write(dir.File("m.safetensors"),
            [new("a.f32", SourceDType.F32, [3, 5], f32), new("b.f16", SourceDType.F16, [7], f16),
                new("c.bf16", SourceDType.BF16, [2, 3, 4], bf16), new("empty", SourceDType.F32, [0, 4], [])],
            new Dictionary<string, string> { ["format"] = "pt" });
        using var file = SafetensorsFile.Open(dir.File("m.safetensors"));
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(4, file.Tensors.Count);
        Assert.Equal(f32, file.ReadAll(file["a.f32"]));
        Assert.Equal(f16.Select(v => (float)(Half)v), file.ReadAll(file["b.f16"]));
        Assert.Equal(bf16.Select(v => FloatCodec.Bf16ToSingle(FloatCodec.SingleToBf16(v))),
            file.ReadAll(file["c.bf16"]));
        Assert.Equal([2L, 3, 4], file["c.bf16"].Shape);
        var part = new float[4];
        file.Read(file["a.f32"], 6, part);
        Assert.Equal(f32[6..10], part);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Read(file["a.f32"], 12, part));
        Assert.Contains("no such tensor", Assert.Throws<CheckpointException>(() => file["missing"]).Message);
    }

    public static TheoryData<string, string, int, string> HostileHeaders() => new()
    {
        { "unknown dtype", """{"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}""", 8, "dtype I64 is not supported" },
        { "shape disagrees with offsets", """{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "needs 12 bytes" },
        { "offsets past the data", """{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "past the 8 bytes of data" },
        { "offsets reversed", """{"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}""", 8, "end before they begin" },
        { "overlap", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "overlap" },
        { "hole", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "hole of 4 bytes" },
        { "unindexed tail", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 8, "belong to no tensor" },
        { "duplicate name", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "appears twice" },
        { "negative dimension", """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "not a non-negative integer" },
        { "fractional dimension", """{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}""", 4, "not a non-negative integer" },
        { "element count overflow", """{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}""", 4, "too large" },
        { "unknown field", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}""", 4, "unexpected or repeated field 'extra'" },
        { "missing field", """{"a":{"dtype":"F32","data_offsets":[0,4]}}""", 4, "all required" },
        { "metadata not strings", """{"__metadata__":{"n":1}}""", 0, "must be a string" },
        { "not an object", """["a"]     """, 0, "does not start with '{'" },
        { "not JSON", """{"a": nope}""", 0, "not valid JSON" },
        { "too deep", """{"a":{"dtype":"F32","shape":[[[[[[[[[1]]]]]]]]],"data_offsets":[0,4]}}""", 4, "" },
    };

    [Theory]
    [MemberData(nameof(HostileHeaders))]
    public void Hostile_headers_fail_with_a_message_naming_the_problem(string what, string header, int dataBytes,
        string expected)
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("bad.safetensors"), Raw(header, dataBytes));
        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(dir.File("bad.safetensors")));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith(dir.File("bad.safetensors"), e.Message);
        _ = what;
    }

    [Fact]
    public void Header_lengths_and_encodings_that_lie_are_refused()
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        var good = Bytes([new("t", SourceDType.F32, [2], [1f, 2f])]);

        File.WriteAllBytes(path, good[..5]);
        Assert.Contains("shorter than the 8-byte",
            Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);

        var huge = (byte[])good.Clone();
        BitConverter.GetBytes(ulong.MaxValue).CopyTo(huge, 0);
        File.WriteAllBytes(path, huge);
        Assert.Contains("exceeds the format's limit",
            Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);

        var past = (byte[])good.Clone();
        BitConverter.GetBytes((ulong)good.Length).CopyTo(past, 0);
        File.WriteAllBytes(path, past);
        Assert.Contains("runs past the end",
            Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);

        File.WriteAllBytes(path, good[..^1]);
        Assert.Contains("past the 7 bytes of data",
            Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);

        var badUtf8 = Raw("{\"t\xff\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0);
        badUtf8[8 + 3] = 0xff;   // an invalid UTF-8 byte inside the tensor name
        File.WriteAllBytes(path, badUtf8);
        Assert.Contains("not valid UTF-8",
            Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);

        Assert.Contains("absent.safetensors: does not exist",
            Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(dir.File("absent.safetensors"))).Message);
    }

    [Fact]
    public void Random_corruptions_never_escape_as_other_exceptions()
    {
        using var dir = new TempDir();
        string path = dir.File("fuzz.safetensors");
        var good = Bytes([new("a", SourceDType.BF16, [3, 4], Values(12, 4)),
            new("b", SourceDType.F32, [5], Values(5, 5))], new Dictionary<string, string> { ["k"] = "v" });
        var rng = new Random(77);
        int refused = 0;
        for (int i = 0; i < 1500; i++)
        {
            var bad = (byte[])good.Clone();
            if (rng.Next(3) == 0) bad = bad[..rng.Next(bad.Length)];
            else for (int k = rng.Next(1,
                6); k > 0; k--) bad[rng.Next(Math.Min(bad.Length, 8 + 200))] ^= (byte)(1 << rng.Next(8));
            File.WriteAllBytes(path, bad);
            try
            {
                using var f = SafetensorsFile.Open(path);
                foreach (var t in f.Tensors) f.ReadAll(t);
            }
            catch (CheckpointException)
            {
                refused++;
            }
        }
        Assert.True(refused > 500, $"only {refused} of 1500 corruptions were refused");
    }

    [Fact]
    public void Sharded_checkpoints_follow_their_index_exactly()
    {
        using var dir = new TempDir();
        var a = Values(6, 6);
        var b = Values(4, 7);
        Write(dir.File("model-00001-of-00002.safetensors"), [new("x.weight", SourceDType.F32, [2, 3], a)]);
        Write(dir.File("model-00002-of-00002.safetensors"),
            [new("y.weight", SourceDType.BF16, [4], b), new("z.weight", SourceDType.F32, [1], [5f])]);
        string index = dir.File(SafetensorsCheckpoint.IndexFile);
        void Index(string map)
            => File.WriteAllText(index, "{\"metadata\":{\"total_size\":32},\"weight_map\":{" + map + "}}");

        Index("""  "x.weight":"model-00001-of-00002.safetensors","y.weight":"model-00002-of-00002.safetensors","z.weight":"model-00002-of-00002.safetensors" """);
        using (var ckpt = SafetensorsCheckpoint.Open(dir.Path))
        {
            Assert.Equal(3, ckpt.Tensors.Count);
            Assert.Equal(a, ckpt.ReadAll(ckpt["x.weight"]));
            Assert.Equal(4, ckpt.ReadAll(ckpt["y.weight"]).Length);
        }

        Index("""  "x.weight":"model-00002-of-00002.safetensors","y.weight":"model-00002-of-00002.safetensors" """);
        Assert.Contains("does not hold it",
            Assert.Throws<CheckpointException>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);

        Index("""  "x.weight":"model-00001-of-00002.safetensors","y.weight":"model-00002-of-00002.safetensors" """);
        Assert.Contains("not in the index's weight_map",
            Assert.Throws<CheckpointException>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);

        Index("""  "x.weight":"../model-00001-of-00002.safetensors" """);
        Assert.Contains("not a plain file name",
            Assert.Throws<CheckpointException>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);

        Index("""  "x.weight":"model-00003-of-00002.safetensors" """);
        Assert.Contains("does not exist",
            Assert.Throws<CheckpointException>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);

        File.WriteAllText(index, """{"weight_map":{"x.weight":"model-00001-of-00002.safetensors"},"extra":1}""");
        Assert.Contains("extra",
            Assert.Throws<CheckpointException>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);

        File.Delete(index);
        Assert.Contains("no model.safetensors",
            Assert.Throws<CheckpointException>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);
    }
}
