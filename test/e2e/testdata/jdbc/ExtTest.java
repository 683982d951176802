// ExtTest drives INSTALL/UNINSTALL EXTENSION through pgverbs with the
// PostgreSQL JDBC driver, which speaks the extended protocol for everything
// (named server-side statements once prepareThreshold is reached, BEGIN sent
// in the same Sync as the first statement of a transaction, batches in one
// Sync, SAVEPOINTs with autosave).
//
// Run as a single-file program:
//
//	java -cp /usr/share/java/postgresql.jar ExtTest.java JDBC-URL SECTION
//
// against an empty database behind a proxy serving test/e2e/testdata/extensions;
// SECTION is "main" (everything but the following) or "midbatch" (a command
// failing in the middle of a batch, then more commands).
// It prints one line per observation; TestJDBC compares the whole transcript.
// Anything unexpected (an exception no step anticipates) exits with status 1
// after printing "FAIL" and the stack trace.

import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public class ExtTest {
    static void out(String s) {
        System.out.println(s);
        System.out.flush();
    }

    // describe renders an error as "SQLSTATE message" with the server's own
    // message (not the driver's decorated one).
    static String describe(SQLException e) {
        String msg = e.getMessage();
        if (e instanceof PSQLException) {
            ServerErrorMessage sem = ((PSQLException) e).getServerErrorMessage();
            if (sem != null) {
                msg = sem.getMessage();
            }
        }
        return e.getSQLState() + " " + msg;
    }

    static String warnings(Statement st) throws SQLException {
        List<String> w = new ArrayList<>();
        for (SQLWarning x = st.getWarnings(); x != null; x = x.getNextWarning()) {
            w.add(x.getMessage());
        }
        return String.join("|", w);
    }

    // exec runs sql with Statement.execute and reports what JDBC saw.
    static String exec(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            boolean rs = st.execute(sql);
            int count = st.getUpdateCount();
            String w = warnings(st);
            boolean more = st.getMoreResults();
            int after = st.getUpdateCount();
            return "execute=" + rs + " updateCount=" + count + " more=" + more + "/" + after + " warnings=" + w;
        }
    }

    // execErr runs sql expecting an SQLException and returns its description.
    static String execErr(Connection c, String sql) {
        try (Statement st = c.createStatement()) {
            st.execute(sql);
            return "no error";
        } catch (SQLException e) {
            return "error " + describe(e);
        }
    }

    static String q1(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            if (!rs.next()) {
                return "<no rows>";
            }
            return String.valueOf(rs.getString(1));
        }
    }

    static String q1Err(Connection c, String sql) {
        try {
            return q1(c, sql);
        } catch (SQLException e) {
            return "error " + describe(e);
        }
    }

    // installed lists pgverbs.extensions as "name version,...", "none" when
    // empty or when the catalog does not exist.
    static String installed(Connection c) throws SQLException {
        if (q1(c, "SELECT to_regclass('pgverbs.extensions') IS NULL").equals("t")) {
            return "none";
        }
        return q1(c, "SELECT coalesce(string_agg(name || ' ' || version, ',' ORDER BY name), 'none') FROM pgverbs.extensions");
    }

    static String rel(Connection c, String name) throws SQLException {
        return q1(c, "SELECT to_regclass('" + name + "') IS NOT NULL");
    }

    static String batch(Connection c, String... sqls) {
        try (Statement st = c.createStatement()) {
            for (String s : sqls) {
                st.addBatch(s);
            }
            int[] counts = st.executeBatch();
            return "counts=" + Arrays.toString(counts) + " warnings=" + warnings(st);
        } catch (BatchUpdateException e) {
            SQLException next = e.getNextException();
            return "BatchUpdateException state=" + e.getSQLState() + " counts=" + Arrays.toString(e.getUpdateCounts())
                    + " next=" + (next == null ? "null" : describe(next));
        } catch (SQLException e) {
            return "error " + describe(e);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: ExtTest JDBC-URL main|midbatch");
            System.exit(2);
        }
        try {
            run(args[0], args[1]);
        } catch (Throwable e) {
            out("FAIL unexpected " + e);
            e.printStackTrace(System.out);
            System.exit(1);
        }
        out("done");
    }

    static void run(String url, String section) throws Exception {
        Connection conn = DriverManager.getConnection(url);
        try {
            switch (section) {
                case "main":
                    mainSection(url, conn);
                    break;
                case "midbatch":
                    midbatch(conn);
                    break;
                default:
                    throw new IllegalArgumentException("unknown section " + section);
            }
        } finally {
            conn.close();
        }
    }

    // midbatch: a command failing in the middle of a batch, with statements
    // after it before the Sync, then more commands on the same session.
    static void midbatch(Connection c) throws SQLException {
        out("== failing command mid-batch");
        out("autocommit on: " + batch(c, "CREATE TABLE m1()", "INSTALL EXTENSION nosuch", "CREATE TABLE m2()"));
        out("after: m1=" + rel(c, "m1") + " m2=" + rel(c, "m2") + " installed=" + installed(c));
        out("control: " + batch(c, "CREATE TABLE c1()", "DROP TABLE nosuch_t", "CREATE TABLE c2()"));
        out("after: c1=" + rel(c, "c1") + " c2=" + rel(c, "c2"));
        out("install baz: " + exec(c, "INSTALL EXTENSION baz"));
        c.setAutoCommit(false);
        out("autocommit off: " + batch(c, "CREATE TABLE m3()", "INSTALL EXTENSION nosuch", "CREATE TABLE m4()"));
        out("select in failed tx: " + q1Err(c, "SELECT 1"));
        c.rollback();
        out("after rollback: select=" + q1(c, "SELECT 1") + " m3=" + rel(c, "m3") + " m4=" + rel(c, "m4"));
        out("install bar: " + exec(c, "INSTALL EXTENSION bar"));
        c.commit();
        c.setAutoCommit(true);
        out("after commit: installed=" + installed(c));
    }

    static void mainSection(String url, Connection c) throws SQLException {
        out("== statement");
        out("install baz: " + exec(c, "INSTALL EXTENSION baz"));
        out("baz_data rows: " + q1(c, "SELECT count(*) FROM baz_data"));
        out("install baz again: " + execErr(c, "INSTALL EXTENSION baz"));
        out("select after error: " + q1(c, "SELECT 1"));
        out("installed: " + installed(c));

        out("== prepared");
        out("uninstall baz: " + exec(c, "UNINSTALL EXTENSION baz"));
        out("installed: " + installed(c));
        try (PreparedStatement ps = c.prepareStatement("INSTALL EXTENSION IF NOT EXISTS baz")) {
            out("metadata: params=" + ps.getParameterMetaData().getParameterCount() + " columns=" + ps.getMetaData());
            for (int i = 1; i <= 3; i++) {
                int n = ps.executeUpdate();
                out("prepared install " + i + ": executeUpdate=" + n + " warnings=" + warnings(ps));
                out("baz_data rows: " + q1(c, "SELECT count(*) FROM baz_data"));
            }
        }
        try (PreparedStatement ps = c.prepareStatement("INSTALL EXTENSION baz")) {
            for (int i = 1; i <= 2; i++) {
                try {
                    ps.execute();
                    out("prepared duplicate " + i + ": no error");
                } catch (SQLException e) {
                    out("prepared duplicate " + i + ": error " + describe(e));
                }
            }
        }
        out("installed: " + installed(c));

        out("== transactions");
        out("uninstall baz: " + exec(c, "UNINSTALL EXTENSION baz"));
        c.setAutoCommit(false);
        out("install in tx: " + exec(c, "INSTALL EXTENSION baz"));
        out("installed in tx: " + installed(c));
        c.rollback();
        out("after rollback: installed=" + installed(c) + " baz_data=" + rel(c, "baz_data"));
        c.commit();
        out("install in tx: " + exec(c, "INSTALL EXTENSION baz"));
        c.commit();
        out("after commit: installed=" + installed(c) + " baz_data=" + rel(c, "baz_data"));
        c.commit();
        out("duplicate in tx: " + execErr(c, "INSTALL EXTENSION baz"));
        out("select in failed tx: " + q1Err(c, "SELECT 1"));
        c.rollback();
        out("select after rollback: " + q1(c, "SELECT 1"));
        c.commit();
        c.setAutoCommit(true);
        out("installed: " + installed(c));

        out("== batch, autocommit on");
        out("batch: " + batch(c, "CREATE TABLE j1(v int)", "INSTALL EXTENSION bar",
                "INSERT INTO j1 SELECT v FROM baz_data UNION ALL SELECT 2"));
        out("installed: " + installed(c));
        out("bar_version: " + q1(c, "SELECT bar_version()"));
        out("j1: " + q1(c, "SELECT string_agg(v::text, ',' ORDER BY v) FROM j1"));
        try (PreparedStatement ps = c.prepareStatement("INSTALL EXTENSION IF NOT EXISTS bar")) {
            ps.addBatch();
            ps.addBatch();
            ps.addBatch();
            out("prepared batch: counts=" + Arrays.toString(ps.executeBatch()));
        }
        out("installed: " + installed(c));

        out("== batch, autocommit off");
        out("uninstall bar: " + exec(c, "UNINSTALL EXTENSION bar"));
        c.setAutoCommit(false);
        out("batch: " + batch(c, "CREATE TABLE j2(v int)", "INSTALL EXTENSION bar",
                "INSERT INTO j2 SELECT length(bar_version())"));
        out("installed in tx: " + installed(c));
        c.rollback();
        out("after rollback: installed=" + installed(c) + " j2=" + rel(c, "j2"));
        c.commit();
        out("batch: " + batch(c, "CREATE TABLE j2(v int)", "INSTALL EXTENSION bar",
                "INSERT INTO j2 SELECT length(bar_version())"));
        c.commit();
        out("after commit: installed=" + installed(c) + " j2=" + q1(c, "SELECT string_agg(v::text, ',') FROM j2"));
        c.commit();
        c.setAutoCommit(true);

        out("== batch errors");
        // The failing command ends each batch here; midbatch has it in the middle.
        out("autocommit on: " + batch(c, "CREATE TABLE j3()", "INSTALL EXTENSION nosuch"));
        out("after: j3=" + rel(c, "j3") + " installed=" + installed(c));
        // The same batch failing on an ordinary statement, for comparison.
        out("control: " + batch(c, "CREATE TABLE k3()", "DROP TABLE nosuch_t"));
        out("after: k3=" + rel(c, "k3"));
        c.setAutoCommit(false);
        out("autocommit off: " + batch(c, "CREATE TABLE j4()", "INSTALL EXTENSION nosuch"));
        out("select in failed tx: " + q1Err(c, "SELECT 1"));
        c.rollback();
        out("after rollback: select=" + q1(c, "SELECT 1") + " j4=" + rel(c, "j4") + " installed=" + installed(c));
        out("batch after rollback: " + batch(c, "CREATE TABLE j5()", "INSTALL EXTENSION IF NOT EXISTS bar"));
        c.commit();
        c.setAutoCommit(true);
        out("after commit: j5=" + rel(c, "j5") + " installed=" + installed(c));

        out("== autosave");
        try (Connection a = DriverManager.getConnection(url + "&autosave=always")) {
            a.setAutoCommit(false);
            out("create j6: " + exec(a, "CREATE TABLE j6()"));
            out("uninstall bar: " + exec(a, "UNINSTALL EXTENSION bar"));
            out("install nosuch: " + execErr(a, "INSTALL EXTENSION nosuch"));
            out("select after rolled back savepoint: " + q1Err(a, "SELECT 1"));
            out("installed in tx: " + installed(a));
            out("install bar: " + exec(a, "INSTALL EXTENSION bar"));
            a.commit();
            out("after commit: j6=" + rel(a, "j6") + " installed=" + installed(a));
        }

        out("== uninstall");
        out("uninstall baz: " + execErr(c, "UNINSTALL EXTENSION baz"));
        out("uninstall baz cascade: " + exec(c, "UNINSTALL EXTENSION baz CASCADE"));
        out("after: installed=" + installed(c) + " baz_data=" + rel(c, "baz_data") + " bar_version="
                + q1(c, "SELECT to_regprocedure('bar_version()') IS NOT NULL"));
        out("uninstall again: " + execErr(c, "UNINSTALL EXTENSION baz"));
        out("uninstall if exists: " + exec(c, "UNINSTALL EXTENSION IF EXISTS baz"));
    }
}
